"""Pure raw completion and infill (`_completion`): params, requests, answers and streams."""

from __future__ import annotations

import pytest

from llamacpp_lite import Completion, CompletionChunk, InvalidRequestError, StreamError
from llamacpp_lite import _completion as cmp

FINAL = {"index": 0, "content": "abc", "tokens": [], "id_slot": 0, "stop": True, "model": "m",
         "tokens_predicted": 3, "tokens_evaluated": 5, "prompt": "hi", "has_new_line": False, "truncated": False,
         "stop_type": "limit", "stopping_word": "", "tokens_cached": 7,
         "timings": {"prompt_n": 5, "predicted_n": 3, "predicted_per_second": 100.0}}
PROB = {"id": 97, "token": "a", "bytes": [97], "logprob": -0.5, "top_logprobs": []}


def partial(text: str, **extra) -> dict:
    return {"index": 0, "content": text, "tokens": [1], "stop": False, "id_slot": -1, "tokens_predicted": 1,
            "tokens_evaluated": 5, **extra}


# -- params ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("configured", "call", "expected"), [
    ({}, {"max_tokens": 5}, {"n_predict": 5}),
    ({"n_predict": 9}, {"max_tokens": 5}, {"n_predict": 5}),  # the call wins, whatever the name
    ({"max_tokens": 9}, {"n_predict": 5}, {"n_predict": 5}),
    ({"max_completion_tokens": 9}, {}, {"n_predict": 9}),
    ({}, {"n_predict": 2, "max_tokens": 5}, {"n_predict": 2}),  # within a layer, the server's order
    ({"temperature": 0.5}, {"top_k": 1}, {"temperature": 0.5, "top_k": 1}),
    ({}, {"logprobs": True}, {"n_probs": 20}),
    ({}, {"logprobs": True, "top_logprobs": 2}, {"n_probs": 2}),
    ({}, {"logprobs": 3}, {"n_probs": 3}),
    ({}, {"logprobs": False}, {}),
    ({}, {"logprobs": True, "n_probs": 4}, {"n_probs": 4}),
])
def test_generation_params(configured, call, expected):
    assert cmp.generation_params(configured, call) == expected


@pytest.mark.parametrize(("call", "message"), [
    ({"top_logprobs": 2}, "top_logprobs requires logprobs=True"),
    ({"logprobs": "yes"}, "logprobs must be True, False or a count"),
    ({"response_format": {"type": "json_object"}}, "pass json_schema="),
])
def test_generation_params_refused(call, message):
    with pytest.raises(InvalidRequestError, match=message):
        cmp.generation_params({}, call)


# -- requests ----------------------------------------------------------------------------------


def test_completion_request_sends_the_raw_prompt():
    body = cmp.build_completion_request("Once", model_id="m", params={"n_predict": 4, "grammar": "g"}, stream=True)
    assert body == {"model": "m", "n_predict": 4, "grammar": "g", "prompt": "Once", "stream": True}
    assert cmp.build_completion_request((1, 2), model_id="m", params={}, stream=False)["prompt"] == [1, 2]


@pytest.mark.parametrize(("prompt", "params", "message"), [
    ("", {}, "prompt is empty"),
    ([], {}, "prompt is empty"),
    ([1, "a"], {}, "element 1 must be a token id"),
    (["a", "b"], {}, "element 0 must be a token id"),  # several prompts would give several answers
    (None, {}, "prompt must be a string or a list of token ids"),
    ("a", {"prompt": "b"}, "cannot be set through params"),
    ("a", {"stream": False}, "cannot be set through params"),
    ("a", {"n": 2}, "n must be 1"),
    ("a", {"n_cmpl": 2}, "n must be 1"),
    ("a", {"grammar": "g", "json_schema": {}}, "grammar and json_schema cannot be used together"),
])
def test_completion_request_refused(prompt, params, message):
    with pytest.raises(InvalidRequestError, match=message):
        cmp.build_completion_request(prompt, model_id="m", params=params, stream=False)


def test_infill_request():
    extra = [{"filename": "util.py", "text": "x = 1\n"}, {"text": "y"}]
    body = cmp.build_infill_request("def f(", ")", prompt="a", input_extra=extra, model_id="m",
                                    params={"n_predict": 8}, stream=False)
    assert body == {"model": "m", "n_predict": 8, "input_prefix": "def f(", "input_suffix": ")", "prompt": "a",
                    "input_extra": extra, "stream": False}
    plain = cmp.build_infill_request("", "", prompt=None, input_extra=None, model_id="m", params={}, stream=True)
    assert plain == {"model": "m", "input_prefix": "", "input_suffix": "", "stream": True}


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(prefix=1, suffix=""), "prefix must be a string"),
    (dict(prefix="", suffix=None), "suffix must be a string"),
    (dict(prefix="", suffix="", prompt=5), "prompt must be a string or None"),
    (dict(prefix="", suffix="", input_extra="util.py"), "input_extra must be a list"),
    (dict(prefix="", suffix="", input_extra={"text": "x"}), "input_extra must be a list"),
    (dict(prefix="", suffix="", input_extra=[{"filename": "a"}]), r"input_extra\[0\]"),
    (dict(prefix="", suffix="", input_extra=[{"text": "x", "path": "a"}]), r"input_extra\[0\]"),
    (dict(prefix="", suffix="", input_extra=[{"text": "x", "filename": 3}]), r"input_extra\[0\]"),
    (dict(prefix="", suffix="", params={"input_prefix": "x"}), "cannot be set through params"),
])
def test_infill_request_refused(kwargs, message):
    arguments = {"prompt": None, "input_extra": None, "params": {}, **kwargs}
    with pytest.raises(InvalidRequestError, match=message):
        cmp.build_infill_request(model_id="m", stream=False, **arguments)


# -- answers -----------------------------------------------------------------------------------


def test_a_whole_answer():
    result = cmp.parse_completion({**FINAL, "completion_probabilities": [PROB]}, "/completion")
    assert result == Completion(text="abc", stop_reason="max_tokens", prompt_tokens=5, completion_tokens=3,
                                timings=FINAL["timings"], probabilities=result.probabilities)
    assert [p.token for p in result.probabilities] == ["a"]
    assert cmp.parse_completion(FINAL, "/completion").probabilities is None


@pytest.mark.parametrize(("stop_type", "reason"), [("eos", "end_turn"), ("word", "stop_sequence"),
                                                   ("limit", "max_tokens"), ("none", "end_turn"),
                                                   ("future", "end_turn")])
def test_stop_types_map_to_the_chat_stop_reasons(stop_type, reason):
    result = cmp.parse_completion({**FINAL, "stop_type": stop_type, "stopping_word": "x"}, "/completion")
    assert result.stop_reason == reason
    assert result.stopping_word == ("x" if stop_type == "word" else None)


@pytest.mark.parametrize("answer", [
    [FINAL],  # several prompts: an array
    {**FINAL, "content": None},
    {key: value for key, value in FINAL.items() if key != "stop_type"},
    {**FINAL, "tokens_predicted": "3"},
    {**FINAL, "tokens_evaluated": True},
    {**FINAL, "timings": []},
    {**FINAL, "completion_probabilities": [{"id": 1}]},
])
def test_malformed_answers_are_stream_errors(answer):
    with pytest.raises(StreamError):
        cmp.parse_completion(answer, "/completion")


def test_a_stream_gives_chunks_then_the_whole_answer():
    payloads = [partial("a", completion_probabilities=[PROB]), partial("", completion_probabilities=[PROB]),
                partial("b", completion_probabilities=[PROB]), {**FINAL, "content": ""}]
    chunks = list(cmp.translate_stream(iter(payloads), "/completion"))
    assert [chunk.text for chunk in chunks] == ["a", "", "b", ""]
    assert all(len(chunk.probabilities) == 1 for chunk in chunks[:3]) and chunks[3].probabilities == ()
    assert [chunk.final is None for chunk in chunks] == [True, True, True, False]
    final = chunks[-1].final
    assert final.text == "ab" and final.stop_reason == "max_tokens" and len(final.probabilities) == 3


def test_progress_events_are_skipped_and_no_probabilities_means_none():
    progress = partial("", prompt_progress={"total": 5, "cache": 0, "processed": 5, "time_ms": 1})
    chunks = list(cmp.translate_stream(iter([progress, partial("x"), FINAL]), "/infill"))
    assert chunks[0] == CompletionChunk(text="x")
    assert chunks[-1].final.text == "xabc" and chunks[-1].final.probabilities is None


@pytest.mark.parametrize(("payloads", "message"), [
    ([partial("a")], "ended before its final object"),
    ([None], "something other than a result object"),
    ([partial("a"), {"stop": False}], "without a str 'content'"),
    ([partial("a", completion_probabilities="x")], "probabilities of the wrong shape"),
])
def test_malformed_streams_are_stream_errors(payloads, message):
    with pytest.raises(StreamError, match=message):
        list(cmp.translate_stream(iter(payloads), "/completion"))


def test_is_final():
    assert cmp.is_final(FINAL) and not cmp.is_final(partial("a")) and not cmp.is_final(None)
    assert not cmp.is_final({"stop": "true"})
