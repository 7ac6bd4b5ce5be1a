"""Error classification (status + error.type, never the message) and foreign-exception mapping."""

from __future__ import annotations

import inspect
import json
import sys

import pytest
import requests
import urllib3.exceptions

import llamacpp_lite as lite
from llamacpp_lite._errors import error_from_response
from llamacpp_lite._sse import iter_payloads
from llamacpp_lite._transport import _mapped, translate


def body(status, error_type, message="m", **extra):
    return json.dumps({"error": {"code": status, "message": message, "type": error_type, **extra}})


@pytest.mark.parametrize("status,error_type,expected", [
    (400, "invalid_request_error", lite.BadRequestError),
    (400, "exceed_context_size_error", lite.ContextWindowOverflowException),
    (500, "exceed_context_size_error", lite.ContextWindowOverflowException),  # older builds
    (401, "authentication_error", lite.AuthenticationError),
    (403, "permission_error", lite.AuthenticationError),
    (404, "not_found_error", lite.NotSupportedError),
    (501, "not_supported_error", lite.NotSupportedError),
    (503, "unavailable_error", lite.ModelThrottledException),
    (429, None, lite.ModelThrottledException),
    (500, "server_error", lite.ServerError),
    (502, None, lite.ServerError),
    (418, None, lite.BadRequestError),
])
def test_classified_by_status_and_type(status, error_type, expected):
    exc = error_from_response(status, body(status, error_type) if error_type else "<html>bad gateway</html>")
    assert isinstance(exc, expected) and type(exc).__name__ == expected.__name__  # (Strands-compatible subclass)
    assert exc.status_code == status and exc.error_type == error_type


def test_messages_do_not_decide_the_class():
    # The reference provider called anything mentioning "context" an overflow and "rate" throttling.
    exc = error_from_response(400, body(400, "invalid_request_error", "context and kv cache and slot; generate at a rate"))
    assert type(exc) is lite.BadRequestError


def test_context_overflow_carries_the_counts_and_server_message():
    text = body(400, "exceed_context_size_error", "request (3680 tokens) exceeds the available context size (256 tokens)",
                n_prompt_tokens=3680, n_ctx=256)
    exc = error_from_response(400, text)
    assert (exc.n_prompt_tokens, exc.n_ctx) == (3680, 256)
    assert "3680 tokens" in str(exc) and exc.message.startswith("request (3680")


def test_non_json_error_body_is_quoted():
    exc = error_from_response(502, "<html>Bad Gateway</html>")
    assert "<html>Bad Gateway</html>" in str(exc) and exc.body is None


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


REQUESTS_EXCEPTIONS = sorted(
    {cls for cls in _all_subclasses(requests.exceptions.RequestException) if cls.__module__.startswith("requests")},
    key=lambda c: c.__name__,
)


@pytest.mark.parametrize("cls", REQUESTS_EXCEPTIONS, ids=lambda c: c.__name__)
def test_every_requests_exception_is_mapped(cls):
    exc = cls("boom", "doc", 0) if issubclass(cls, ValueError) else cls("boom")  # JSONDecodeError needs doc, pos
    with pytest.raises(lite.LlamaCppError) as info:
        with _mapped(None):
            raise exc
    assert info.value.__cause__ is exc
    assert not isinstance(info.value, requests.exceptions.RequestException)


@pytest.mark.parametrize("exc,streaming,expected", [
    (requests.exceptions.ConnectTimeout("t"), False, lite.ConnectTimeout),
    (requests.exceptions.ReadTimeout("t"), False, lite.ReadTimeout),
    (requests.exceptions.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")), True,
     lite.ReadTimeout),
    (requests.exceptions.ConnectionError("refused"), False, lite.ConnectError),
    (requests.exceptions.ConnectionError("reset"), True, lite.StreamError),
    (requests.exceptions.ChunkedEncodingError("cut"), True, lite.StreamError),
    (urllib3.exceptions.ProtocolError("cut"), True, lite.StreamError),
    (requests.exceptions.MissingSchema("x"), False, lite.InvalidRequestError),
    (requests.exceptions.TooManyRedirects("x"), False, lite.TransportError),
])
def test_specific_mappings(exc, streaming, expected):
    assert type(translate(exc, streaming=streaming)) is expected


def test_connect_timeout_is_both_a_timeout_and_a_connect_error():
    assert issubclass(lite.ConnectTimeout, lite.TimeoutException) and issubclass(lite.ConnectTimeout, lite.ConnectError)
    assert issubclass(lite.InvalidRequestError, ValueError)


def test_invalid_utf8_in_a_stream_is_a_stream_error():
    with pytest.raises(lite.StreamError, match="UTF-8"):
        list(iter_payloads([b"data: \xff\n\n"], event_limit=100))


def test_strands_classes_when_strands_is_loaded(monkeypatch):
    fake = type(sys)("strands.types.exceptions")

    class ContextWindowOverflowException(Exception):
        pass

    class ModelThrottledException(Exception):
        def __init__(self, message):
            super().__init__(message)
            self.message = message

    fake.ContextWindowOverflowException = ContextWindowOverflowException
    fake.ModelThrottledException = ModelThrottledException
    monkeypatch.setitem(sys.modules, "strands.types.exceptions", fake)
    monkeypatch.setattr("llamacpp_lite._errors._STRANDS_CLASSES", {})
    overflow = error_from_response(400, body(400, "exceed_context_size_error", n_prompt_tokens=9, n_ctx=8))
    assert isinstance(overflow, ContextWindowOverflowException) and isinstance(overflow, lite.ContextWindowOverflowException)
    assert overflow.n_ctx == 8
    throttled = error_from_response(503, body(503, "unavailable_error", "Loading model"))
    assert isinstance(throttled, ModelThrottledException) and isinstance(throttled, lite.ModelThrottledException)
    assert throttled.message == "Loading model"
    assert type(error_from_response(500, body(500, "server_error"))) is lite.ServerError


def test_without_strands_the_library_classes_are_raised(monkeypatch):
    monkeypatch.delitem(sys.modules, "strands.types.exceptions", raising=False)
    assert type(error_from_response(503, body(503, "unavailable_error"))) is lite.ModelThrottledException


def test_the_tree_is_drawn_in_the_module_docstring():
    import llamacpp_lite._errors as errors

    for name, obj in vars(lite).items():
        if inspect.isclass(obj) and issubclass(obj, lite.LlamaCppError):
            assert name in errors.__doc__, name
