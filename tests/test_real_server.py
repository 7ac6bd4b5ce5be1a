"""The synchronous model against a real llama-server running the tiny test model.

The tiny model writes gibberish by design: these tests check protocol, structure and
constraints, never meaning.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
import requests

import llamacpp_lite as lite
from llamacpp_lite import LlamaCppModel
from llamacpp_lite.server import LlamaServer
from tests.helpers import ADD_TOOL, API_KEY, WEATHER_TOOL, events_of, tiny_png, tiny_wav

pytestmark = pytest.mark.real_server

LONG = {"max_tokens": 300, "ignore_eos": True}


def test_first_delta_arrives_while_the_server_is_still_generating(real_model, real_server):
    busy_at_first_delta = None
    seen = []
    for event in real_model.stream("Tell me a long story.", **LONG):
        seen.append(event)
        if busy_at_first_delta is None and "contentBlockDelta" in event:
            slots = requests.get(real_server.base_url + "/slots", timeout=5).json()
            busy_at_first_delta = any(slot["is_processing"] for slot in slots)
    assert busy_at_first_delta is True
    assert seen[-2] == {"messageStop": {"stopReason": "max_tokens"}}


def test_usage_matches_the_server_counts(real_model):
    messages = [{"role": "user", "content": [{"text": "Count my tokens, please."}]}]
    events = list(real_model.stream(messages, system_prompt="You are terse.", max_tokens=12, ignore_eos=True))
    deltas = events_of("contentBlockDelta")(events)
    meta = events[-1]["metadata"]
    assert meta["usage"]["outputTokens"] == 12 == meta["timings"]["predicted_n"]
    assert meta["usage"]["inputTokens"] == real_model.count_tokens(messages, system_prompt="You are terse.")
    assert meta["usage"]["totalTokens"] == meta["usage"]["inputTokens"] + 12
    assert 1 <= len(deltas) <= 12
    assert meta["metrics"]["latencyMs"] >= meta["metrics"]["timeToFirstByteMs"] >= 0
    assert meta["timings"]["predicted_per_second"] > 0


def test_max_tokens_gives_stop_reason_max_tokens(real_model):
    result = real_model.chat("hi", max_tokens=3, ignore_eos=True)
    assert result.stop_reason == "max_tokens" and result.usage["outputTokens"] == 3


def test_a_plain_chat_ends_its_turn(real_model):
    result = real_model.chat("hello", max_tokens=120, temperature=0)
    assert result.stop_reason == "end_turn" and result.text.strip()
    assert result.text.isprintable() or "\n" in result.text


def test_stream_text_and_chat_agree(real_model):
    text = "".join(real_model.stream_text("hello", max_tokens=20, temperature=0))
    assert text == real_model.chat("hello", max_tokens=20, temperature=0).text


def test_params_reach_the_server_top_k_1_is_greedy(real_model):
    greedy = real_model.chat("Say something.", max_tokens=30, temperature=0, ignore_eos=True).text
    hot = real_model.chat("Say something.", max_tokens=30, temperature=1.5, seed=7, ignore_eos=True).text
    hot_top1 = real_model.chat("Say something.", max_tokens=30, temperature=1.5, seed=7, top_k=1,
                               ignore_eos=True).text
    assert hot_top1 == greedy
    assert hot != greedy  # so the comparison above can fail


def test_translated_names_show_in_slots(real_server):
    with LlamaCppModel(real_server.base_url, params={"mirostat": 2, "mirostat_lr": 0.25, "mirostat_ent": 3.5,
                                                     "penalty_last_n": 17, "slot_id": 1}) as model:
        model.chat("hi", max_tokens=2)
        slot = next(s for s in model.slots() if s.id == 1)
    params = slot.params
    assert (params["mirostat"], params["mirostat_eta"], params["mirostat_tau"], params["repeat_last_n"]) == \
        (2, 0.25, 3.5, 17)


def test_concurrent_calls_do_not_see_each_others_settings(real_model):
    results = {}

    def run(n):
        results[n] = real_model.chat("hi", max_tokens=n, ignore_eos=True, temperature=0).usage["outputTokens"]

    threads = [threading.Thread(target=run, args=(n,)) for n in (3, 5, 7, 9, 11, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: n for n in (3, 5, 7, 9, 11, 13)}
    assert real_model.get_config()["params"] == {}


def test_leaving_the_loop_early_frees_the_slot(one_slot_server):
    with LlamaCppModel(one_slot_server.base_url, timeout=(5, 30)) as model:
        for count, _ in enumerate(model.stream("go", max_tokens=5000, ignore_eos=True)):
            if count == 5:
                break
        started = time.monotonic()
        result = model.chat("hi", max_tokens=4, ignore_eos=True)
        assert time.monotonic() - started < 5
        assert result.usage["outputTokens"] == 4


def test_context_overflow_is_raised_with_counts(small_ctx_server):
    with LlamaCppModel(small_ctx_server.base_url) as model:
        with pytest.raises(lite.ContextWindowOverflowException) as info:
            list(model.stream("word " * 400))
    assert info.value.n_ctx == 256 and info.value.n_prompt_tokens > 256
    assert "exceeds the available context size" in str(info.value)


def test_api_key(auth_server):
    with LlamaCppModel(auth_server.base_url, api_key=API_KEY) as model:
        assert model.chat("hi", max_tokens=2).usage["outputTokens"] >= 1
    with LlamaCppModel(auth_server.base_url, api_key="wrong") as model:
        with pytest.raises(lite.AuthenticationError, match="Invalid API Key") as info:
            model.chat("hi", max_tokens=2)
    assert "wrong" not in str(info.value)


def test_props_health_and_wait(real_model):
    real_model.wait_until_ready(timeout=5)
    assert real_model.health() == {"status": "ok"}
    props = real_model.props()
    assert props.n_ctx and props.n_ctx >= 256 and props.total_slots >= 1
    assert props.modalities.get("vision") is False and props.chat_template_caps.get("supports_tool_calls") is True
    assert props.build_info and real_model.context_window_limit == props.n_ctx


def test_wait_until_ready_times_out_on_a_dead_port():
    with LlamaCppModel("http://127.0.0.1:9", retry=None) as model:
        with pytest.raises(lite.TimeoutException, match="not ready"):
            model.wait_until_ready(timeout=0.3)


def test_count_tokens_is_exact_with_tools(real_model):
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    with_tools = real_model.count_tokens(messages, [ADD_TOOL])
    without = real_model.count_tokens(messages)
    assert with_tools > without > 0
    events = list(real_model.stream(messages, [ADD_TOOL], max_tokens=1))
    assert events[-1]["metadata"]["usage"]["inputTokens"] == with_tools


@pytest.mark.parametrize("block,modality", [
    ({"image": {"format": "png", "source": {"bytes": tiny_png()}}}, "vision"),
    ({"audio": {"format": "wav", "source": {"bytes": tiny_wav()}}}, "audio"),
])
def test_media_to_a_text_only_model_says_so(real_model, block, modality):
    message = {"role": "user", "content": [{"text": "what is this?"}, block]}
    with pytest.raises(lite.ModalityNotSupportedError) as info:
        list(real_model.stream([message]))
    assert info.value.modality == modality and "not supported" in str(info.value)


def test_a_path_prefix_in_base_url(llama_server_binary, tiny_model):
    server = LlamaServer(tiny_model, binary=llama_server_binary, extra_args=["-t", "2", "--no-webui", "--api-prefix", "/llm"])
    with server, LlamaCppModel(server.base_url + "/v1/") as model:
        assert server.base_url.endswith("/llm") and model.base_url == server.base_url
        assert model.chat("hi", max_tokens=2, ignore_eos=True).usage["outputTokens"] == 2
        assert model.props().n_ctx and model.count_tokens("hi") > 0


def test_logprobs_are_surfaced(real_model):
    result = real_model.chat("hi", max_tokens=3, ignore_eos=True, logprobs=True, top_logprobs=2)
    assert len(result.logprobs) == 3
    assert all(len(entry["top_logprobs"]) == 2 for entry in result.logprobs)


def test_server_errors_carry_the_server_message(real_model):
    with pytest.raises(lite.BadRequestError, match="type must be number"):
        real_model.chat("hi", temperature="hot")
    with pytest.raises(lite.BadRequestError, match="failed to parse grammar"):
        real_model.chat("hi", grammar="root ::= (")


def test_grammar_constrains_the_output(real_model):
    for seed in (1, 2, 3):
        text = real_model.chat("answer", grammar='root ::= "yes" | "no" | "maybe " [0-9]', seed=seed, temperature=1).text
        assert text in ("yes", "no") or (text.startswith("maybe ") and text[-1].isdigit())


# -- tool calls (the tiny model opens a call at once when tools are offered) ---------------------


def test_tool_call_streams_start_fragments_stop(real_model):
    events = list(real_model.stream("What is 2+3?", [ADD_TOOL], max_tokens=100))
    starts = [e["contentBlockStart"]["start"] for e in events if "contentBlockStart" in e]
    assert starts and starts[0]["toolUse"]["name"] == "add" and starts[0]["toolUse"]["toolUseId"]
    fragments = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                 if "contentBlockDelta" in e and "toolUse" in e["contentBlockDelta"]["delta"]]
    assert len(fragments) > 1  # streamed, not buffered
    arguments = json.loads("".join(fragments))
    assert set(arguments) == {"a", "b"} and all(isinstance(v, int) for v in arguments.values())
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_named_tool_choice_gets_that_tool(real_model, seed):
    result = real_model.chat("Weather in Oslo?", [ADD_TOOL, WEATHER_TOOL], tool_choice={"tool": {"name": "get_weather"}},
                             max_tokens=100, seed=seed, temperature=1.0)
    assert [use.name for use in result.tool_uses] == ["get_weather"]
    assert isinstance(result.tool_uses[0].input["city"], str)


def test_tool_result_gets_a_text_answer(real_model):
    call = real_model.chat("What is 2+3?", [ADD_TOOL], max_tokens=100)
    use = call.tool_uses[0]
    history = [
        {"role": "user", "content": [{"text": "What is 2+3?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": use.tool_use_id, "name": "add", "input": use.input}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": use.tool_use_id, "status": "success",
                                                     "content": [{"json": {"sum": 5}}]}}]},
    ]
    answer = real_model.chat(history, [ADD_TOOL], max_tokens=100)
    assert answer.stop_reason == "end_turn" and answer.text and not answer.tool_uses


def test_tools_with_a_grammar_fail_before_sending(real_model):
    with pytest.raises(lite.InvalidRequestError, match="custom grammar"):
        real_model.stream("hi", [ADD_TOOL], grammar='root ::= "x"')


# -- reasoning ------------------------------------------------------------------------------------


def test_reasoning_block_comes_first_and_closes(reasoning_server):
    grammar = 'root ::= "<think>" [a-z]{5,12} "</think>" [a-z]{5,12}'
    with LlamaCppModel(reasoning_server.base_url) as model:
        events = list(model.stream("think first", grammar=grammar, max_tokens=60, seed=3))
    kinds = [next(iter(e)) for e in events]
    assert kinds[:2] == ["messageStart", "contentBlockStart"]
    assert "reasoningContent" in events[2]["contentBlockDelta"]["delta"]
    first_stop = kinds.index("contentBlockStop")
    assert all("reasoningContent" in e["contentBlockDelta"]["delta"] for e in events[2:first_stop])
    assert kinds[first_stop + 1] == "contentBlockStart"
    assert "text" in events[first_stop + 2]["contentBlockDelta"]["delta"]
    result = lite._result.collect_result(events)
    assert result.reasoning.isalpha() and result.text.isalpha() and "<think>" not in result.text


def test_reasoning_without_a_grammar_and_switched_off(reasoning_server):
    with LlamaCppModel(reasoning_server.base_url) as model:
        thinking = model.chat("hello", max_tokens=100, seed=5)
        plain = model.chat("hello", max_tokens=100, seed=5, chat_template_kwargs={"enable_thinking": False})
    assert thinking.reasoning and thinking.text and thinking.stop_reason == "end_turn"
    assert plain.reasoning == "" and plain.text and plain.stop_reason == "end_turn"


# -- structured output ---------------------------------------------------------------------------


@dataclasses.dataclass
class Pet:
    name: str = dataclasses.field(metadata={"json_schema": {"maxLength": 10}})
    age: int = dataclasses.field(metadata={"json_schema": {"minimum": 1, "maximum": 20}})
    kind: str = dataclasses.field(metadata={"json_schema": {"enum": ["cat", "dog"]}})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_structured_output_into_a_dataclass(real_model, seed):
    events = list(real_model.structured_output(Pet, "Describe a pet.", max_tokens=300, seed=seed, temperature=1.0))
    pet = events[-1]["output"]
    assert isinstance(pet, Pet) and 1 <= pet.age <= 20 and pet.kind in ("cat", "dog") and len(pet.name) <= 10
    assert any("contentBlockDelta" in e for e in events[:-1])
    assert real_model.get_config()["params"] == {}  # the schema went into that one request only


def test_structured_output_with_a_schema_dict(real_model):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    *_, last = real_model.structured_output(schema, "ok?", max_tokens=100)
    assert isinstance(last["output"]["ok"], bool)


def test_structured_output_cut_short_says_so(real_model):
    with pytest.raises(lite.StructuredOutputError, match="cut off by max_tokens") as info:
        list(real_model.structured_output(Pet, "Describe a pet.", max_tokens=4, temperature=0, seed=1))
    assert info.value.stop_reason == "max_tokens" and info.value.raw_text.startswith("{")


def test_stop_string_gives_stop_sequence(real_model):
    result = real_model.chat("hello", max_tokens=60, temperature=0, stop=["a", "e", "o", "t", " "])
    assert result.stop_reason == "stop_sequence"
    assert not any(c in result.text for c in "aeot ")
    plain = real_model.chat("hello", max_tokens=120, temperature=0, stop=["never-appears"])
    assert plain.stop_reason == "end_turn"
