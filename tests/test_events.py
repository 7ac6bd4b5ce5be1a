"""Chunk translation: llama-server stream chunks -> Strands StreamEvents (pure, no network)."""

from __future__ import annotations

import json

import pytest

from llamacpp_lite import StreamError
from llamacpp_lite._events import translate_chunks
from llamacpp_lite._result import collect_result
from tests.helpers import text_chunks


def translate(chunks):
    ticks = iter(range(5, 10_000, 5))  # 5 ms, 10 ms, ...: first chunk at 5 ms, the end at 10 ms
    return list(translate_chunks(chunks, started=0.0, clock=lambda: next(ticks) / 1000))


def tool_chunk(index, fragment, *, tool_id=None, name=None):
    call = {"index": index, "function": {"arguments": fragment}}
    if name:
        call.update(id=tool_id, type="function")
        call["function"]["name"] = name
    return {"choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [call]}}]}


def finish(reason, **extra):
    return {"choices": [{"index": 0, "finish_reason": reason, "delta": {}}], **extra}


def test_text_stream_sequence_and_usage():
    events = translate(text_chunks("Hel", "lo", usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                                                        "prompt_tokens_details": {"cached_tokens": 4}}))
    assert events[:6] == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockStart": {"start": {}}},
        {"contentBlockDelta": {"delta": {"text": "Hel"}}},
        {"contentBlockDelta": {"delta": {"text": "lo"}}},
        {"contentBlockStop": {}},
        {"messageStop": {"stopReason": "end_turn"}},
    ]
    meta = events[6]["metadata"]
    assert meta["usage"] == {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11, "cacheReadInputTokens": 4}
    assert meta["metrics"] == {"latencyMs": 10, "timeToFirstByteMs": 5}
    assert len(events) == 7


@pytest.mark.parametrize("reason,expected", [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use")])
def test_finish_reasons(reason, expected):
    assert translate(text_chunks("x", finish=reason))[-2] == {"messageStop": {"stopReason": expected}}


def test_timings_on_the_finish_chunk_without_usage_chunk():
    timings = {"prompt_n": 7, "cache_n": 3, "predicted_n": 2, "predicted_per_second": 500.0}
    chunks = text_chunks("a", "b")[:-1]
    chunks[-1]["timings"] = timings
    meta = translate(chunks)[-1]["metadata"]
    assert meta["timings"] == timings
    assert meta["usage"] == {"inputTokens": 10, "outputTokens": 2, "totalTokens": 12}


def test_reasoning_block_closes_before_text_opens():
    chunks = [{"choices": [{"index": 0, "finish_reason": None, "delta": {"reasoning_content": r}}]} for r in ("th", "ink")]
    chunks += text_chunks("answer")[1:]
    events = translate(chunks)
    assert events[1:8] == [
        {"contentBlockStart": {"start": {}}},
        {"contentBlockDelta": {"delta": {"reasoningContent": {"text": "th"}}}},
        {"contentBlockDelta": {"delta": {"reasoningContent": {"text": "ink"}}}},
        {"contentBlockStop": {}},
        {"contentBlockStart": {"start": {}}},
        {"contentBlockDelta": {"delta": {"text": "answer"}}},
        {"contentBlockStop": {}},
    ]


def test_tool_calls_stream_fragment_by_fragment_without_interleaving():
    chunks = [
        tool_chunk(0, "{", tool_id="A", name="add"),
        tool_chunk(0, '"a": 1,'),
        tool_chunk(0, ' "b": 2}'),
        tool_chunk(1, '{"city": "Oslo"}', tool_id="", name="get_weather"),  # empty id: generated
        finish("tool_calls"),
    ]
    events = translate(chunks)
    assert events[1] == {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "A", "name": "add"}}}}
    assert events[2:5] == [{"contentBlockDelta": {"delta": {"toolUse": {"input": f}}}} for f in ("{", '"a": 1,', ' "b": 2}')]
    assert events[5] == {"contentBlockStop": {}}
    second = events[6]["contentBlockStart"]["start"]["toolUse"]
    assert second["name"] == "get_weather" and second["toolUseId"].startswith("tooluse_")
    assert events[7:9] == [{"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city": "Oslo"}'}}}},
                           {"contentBlockStop": {}}]
    assert events[9] == {"messageStop": {"stopReason": "tool_use"}}
    result = collect_result(events)
    assert [(t.name, t.input) for t in result.tool_uses] == [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo"})]


def test_a_resent_longer_name_before_arguments_wins():
    chunks = [tool_chunk(0, "", tool_id="A", name="get"), tool_chunk(0, "{}", tool_id="A", name="get_weather"),
              finish("tool_calls")]
    assert translate(chunks)[1] == {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "A", "name": "get_weather"}}}}


def test_text_after_tool_call_opens_a_new_block():
    chunks = [tool_chunk(0, "{}", tool_id="A", name="add"), *text_chunks("done")[1:]]
    kinds = [next(iter(e)) for e in translate(chunks)]
    assert kinds == ["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop",
                     "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]


def test_logprobs_are_collected_into_metadata():
    entry = {"id": 1, "token": "x", "bytes": [120], "logprob": -0.5, "top_logprobs": []}
    chunks = text_chunks("x")
    chunks[1]["choices"][0]["logprobs"] = {"content": [entry]}
    assert translate(chunks)[-1]["metadata"]["logprobs"] == [entry]


@pytest.mark.parametrize("chunk", [
    {"choices": "abc"},
    {"choices": {"0": {}}},
    {"choices": [{"delta": None}]},
    {"choices": [{"delta": {"content": 5}}]},
    {"choices": [{"finish_reason": None}]},
    {"nochoices": True},
    [1, 2],
    "text",
    {"choices": [{"delta": {"tool_calls": [{"index": "0", "function": {"name": "a"}}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 7}}]}}]},
    {"choices": [{"delta": {}, "finish_reason": ["stop"]}]},
])
def test_malformed_chunks_raise_stream_error_with_the_payload(chunk):
    with pytest.raises(StreamError) as info:
        translate([chunk, finish("stop")])
    assert info.value.payload == json.dumps(chunk)


def test_stream_without_finish_reason_raises():
    with pytest.raises(StreamError, match="without a finish reason"):
        translate(text_chunks("a")[:-2])


def test_tool_call_without_name_raises():
    with pytest.raises(StreamError, match="no function name"):
        translate([tool_chunk(0, "{}", tool_id="x", name=None), finish("tool_calls")])


def test_a_stop_string_is_reported_as_stop_sequence():
    chunks = text_chunks("x")
    chunks[-2]["__verbose"] = {"stop_type": "word", "stopping_word": "y"}
    assert translate(chunks)[-2] == {"messageStop": {"stopReason": "stop_sequence"}}
    chunks[-2]["__verbose"] = {"stop_type": "eos", "stopping_word": ""}
    assert translate(chunks)[-2] == {"messageStop": {"stopReason": "end_turn"}}


def test_two_tool_calls_sharing_an_index_are_kept_apart_by_id():
    # Some OpenAI-compatible bridges number parallel calls 0, 0 instead of 0, 1.
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "A", "type": "function", "function": {"name": "add", "arguments": '{"a": 1'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ', "b": 2}'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "B", "type": "function", "function": {"name": "neg", "arguments": '{"x": 3}'}}]}}]},
        {"choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {}}]},
    ]
    result = collect_result(translate_chunks(chunks, started=0.0))
    assert [(t.tool_use_id, t.name, t.input) for t in result.tool_uses] == [
        ("A", "add", {"a": 1, "b": 2}), ("B", "neg", {"x": 3})]
    assert result.stop_reason == "tool_use"


def test_a_repeated_id_on_the_same_index_is_one_call():
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "A", "function": {"name": "ad"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "A", "function": {"name": "add"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
        {"choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {}}]},
    ]
    result = collect_result(translate_chunks(chunks, started=0.0))
    assert [(t.tool_use_id, t.name, t.input) for t in result.tool_uses] == [("A", "add", {})]
