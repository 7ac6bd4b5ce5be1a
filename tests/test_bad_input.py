"""Bad input, anywhere in the public API: a clear library error before anything is sent.

A property-based test over the arguments of the constructor and the public methods: the only
outcomes allowed are a valid request (answered by a mocked server) or a `LlamaCppError`. Before
this, over 25 such inputs leaked `TypeError`, `AttributeError`, `ValueError`, `OverflowError` or
`UnicodeEncodeError`, some only after the request was sent.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel
from tests.helpers import MOCK_URL, sse_body, text_chunks

pytestmark = pytest.mark.filterwarnings("ignore::llamacpp_lite.UnsupportedParameterWarning")  # tfs_z, top_a

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

weird_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.binary(max_size=4), st.just(object()), st.just({1, 2}), st.just(b"\xff"),
    st.just("\u2603\n"), st.just(math.nan), st.just(-1), st.just(0), st.just(float("inf")),
)
values = st.recursive(weird_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3),
    st.tuples(inner, inner)), max_leaves=8)
param_names = st.sampled_from(["temperature", "max_tokens", "top_k", "stop", "stream_options", "logit_bias",
                               "extra_body", "json_schema", "grammar", "n", "slot_id", "tfs_z", "seed"])
params = st.one_of(values, st.dictionaries(param_names, values, max_size=3))

CONSTRUCTOR = {
    "base_url": st.one_of(st.just(MOCK_URL), values, st.sampled_from(["ftp://x", "http://", "http://u:p@llama.test",
                                                                      "llama.test", "http://llama.test/v1/"])),
    "timeout": st.one_of(st.just(None), values, st.tuples(values, values)),
    "api_key": st.one_of(st.just(None), values, st.sampled_from([" key\n", "k\ney", "ключ", ""])),
    "model_id": values,
    "params": params,
    "headers": st.one_of(st.just(None), values, st.dictionaries(st.text(max_size=5), values, max_size=2)),
    "context_window_limit": values,
    "retry": st.one_of(st.just(None), values),
    "pool_maxsize": values,
    "verify": values,
}


def mocked() -> responses.RequestsMock:
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.add(responses.POST, MOCK_URL + "/v1/chat/completions", body=sse_body(*text_chunks("ok")),
             content_type="text/event-stream")
    mock.add(responses.POST, MOCK_URL + "/apply-template", json={"prompt": "p"})
    mock.add(responses.POST, MOCK_URL + "/tokenize", json={"tokens": [1, 2]})
    mock.add(responses.GET, MOCK_URL + "/health", json={"status": "ok"})
    return mock


def sent_json(mock: responses.RequestsMock) -> None:
    """Everything that reached the server was valid, finite JSON."""
    for call in mock.calls:
        if call.request.body:
            json.loads(call.request.body, parse_constant=lambda name: pytest.fail(f"{name} was sent"))


def outcome(function, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except lite.LlamaCppError as exc:
        return exc


@FUZZ
@given(st.fixed_dictionaries({}, optional=CONSTRUCTOR))
def test_the_constructor_builds_a_working_model_or_raises_a_library_error(kwargs):
    model = outcome(LlamaCppModel, **kwargs)
    if isinstance(model, lite.LlamaCppError):
        assert isinstance(model, lite.InvalidRequestError)
        return
    with mocked() as mock:
        result = outcome(lambda: model.chat("hi"))
        sent_json(mock)
    model.close()
    # A model that was built works against its server, or fails with the server-side classes only.
    assert isinstance(result, (lite.ChatResult, lite.TransportError, lite.APIError, lite.StreamError)), result


@FUZZ
@given(messages=values, tool_specs=values, system_prompt=values, tool_choice=values,
       system_prompt_content=values, extra=st.dictionaries(param_names, values, max_size=3))
def test_stream_arguments_give_a_request_or_a_library_error_before_sending(messages, tool_specs, system_prompt,
                                                                             tool_choice, system_prompt_content, extra):
    model = LlamaCppModel(MOCK_URL, retry=None)
    with mocked() as mock:
        events = outcome(model.stream, messages, tool_specs, system_prompt, tool_choice=tool_choice,
                         system_prompt_content=system_prompt_content, **extra)
        if isinstance(events, lite.LlamaCppError):
            assert isinstance(events, lite.InvalidRequestError) and not mock.calls  # before sending
            return
        result = outcome(list, events)
        sent_json(mock)
    assert isinstance(result, (list, lite.APIError, lite.StreamError)), result


@FUZZ
@given(st.dictionaries(st.sampled_from(["model_id", "params", "context_window_limit", "bogus"]), values, max_size=3))
def test_update_config_validates_or_keeps_the_old_config(changes):
    model = LlamaCppModel(MOCK_URL, params={"top_k": 1})
    before = model.get_config()
    error = outcome(model.update_config, **changes)
    if isinstance(error, lite.LlamaCppError):
        assert isinstance(error, lite.InvalidRequestError) and model.get_config() == before


@FUZZ
@given(text=values, messages=values, estimate=values, timeout=values, interval=values, signal=values)
def test_the_other_methods_validate_their_arguments(text, messages, estimate, timeout, interval, signal):
    model = LlamaCppModel(MOCK_URL, retry=None)
    with mocked() as mock:
        for call in (lambda: model.tokenize(text), lambda: model.count_tokens(messages, estimate=estimate),
                     lambda: model.wait_until_ready(timeout, interval),
                     lambda: list(model.stream("hi", cancel_signal=signal))):
            result = outcome(call)
            assert not isinstance(result, Exception) or isinstance(result, lite.LlamaCppError)
        sent_json(mock)


@pytest.mark.parametrize("call,match", [
    (lambda m: m.stream("hi", stream_options=[1]), "stream_options"),
    (lambda m: m.stream("hi", temperature=float("nan")), "temperature holds NaN"),
    (lambda m: m.stream("hi", logit_bias={"1": float("inf")}), "logit_bias.1 holds Infinity"),
    (lambda m: m.stream("hi", stop={"a", "b"}), "stop holds a value of type set"),
    (lambda m: m.stream("hi", grammar=b"root"), "grammar holds a value of type bytes"),
    (lambda m: m.stream("hi", cancel_signal=True), "cancel_signal"),
    (lambda m: m.update_config(params={"seed": object()}), "seed holds a value of type object"),
    (lambda m: m.wait_until_ready(float("nan")), "timeout must be"),
])
def test_typical_mistakes_name_what_is_wrong(call, match):
    with pytest.raises(lite.InvalidRequestError, match=match):
        call(LlamaCppModel(MOCK_URL))


@pytest.mark.parametrize("timeout", [float("nan"), -1, 0, float("inf"), (1, float("nan")), "5", [1, 2, 3]])
def test_bad_timeouts_are_refused(timeout):
    with pytest.raises(lite.InvalidRequestError):
        LlamaCppModel(MOCK_URL, timeout=timeout)


def test_a_cancel_signal_is_any_object_with_is_set():
    with mocked():
        events = list(LlamaCppModel(MOCK_URL).stream("hi", cancel_signal=threading.Event()))
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}


def test_the_async_facade_raises_the_same_errors_before_any_thread_starts():
    with pytest.raises(lite.InvalidRequestError):
        AsyncLlamaCppModel(MOCK_URL, timeout=float("nan"))
