"""The exceptions of llamacpp_lite, and the one place that translates foreign ones.

Only these exceptions leave the library::

    LlamaCppError                       root of everything raised here
    ├── InvalidRequestError             bad input, caught before sending (also a ValueError)
    │   └── InputTooLongError           an input has more tokens than the server takes at once
    ├── TransportError                  the HTTP exchange itself failed
    │   ├── ConnectError                no connection (refused, DNS, TLS, proxy), or closed unanswered
    │   ├── Aborted                     the call was aborted (abort(), or its async task cancelled)
    │   └── TimeoutException
    │       ├── ConnectTimeout          no connection within the connect timeout
    │       ├── ReadTimeout             no byte within the read timeout
    │       └── DeadlineExceeded        the call's deadline passed
    ├── APIError                        the server answered with an error status
    │   ├── BadRequestError             400 (and other 4xx)
    │   │   ├── ContextWindowOverflowException   exceed_context_size_error
    │   │   └── UnknownModelError       a model id the server (a router) does not have
    │   ├── AuthenticationError         401 / 403
    │   ├── NotSupportedError           404 / 501: no such endpoint or feature
    │   ├── ModelThrottledException     429, or 503 (model loading) once retries are spent
    │   └── ServerError                 500 (many client mistakes come back as 500)
    │       ├── ModalityNotSupportedError  image/audio input to a model without it
    │       ├── ModelLoadError          a router could not load the model
    │       └── ToolCallParseError      the server could not parse the model's tool call (500 or in-stream)
    ├── StreamError                     an answer that broke off, was malformed or carried an error
    ├── StructuredOutputError           the output did not parse or validate (also a ValueError)
    │   └── StructuredOutputJSONError   ... because it is not JSON (also a json.JSONDecodeError)
    └── ServerStartError                the managed llama-server (LlamaServer) could not start

When the Strands Agents SDK is already imported, `ContextWindowOverflowException` and
`ModelThrottledException` are raised as subclasses that are also instances of Strands' classes of
the same names, so a Strands Agent reduces its context or retries. Likewise a
`StructuredOutputError` for a pydantic model's failed validation is also a
`pydantic.ValidationError`. Neither Strands nor pydantic is ever imported here.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

__all__ = [
    "APIError",
    "Aborted",
    "AuthenticationError",
    "BadRequestError",
    "ConnectError",
    "ConnectTimeout",
    "ContextWindowOverflowException",
    "DeadlineExceeded",
    "InputTooLongError",
    "InvalidRequestError",
    "LlamaCppError",
    "LlamaCppWarning",
    "ModalityNotSupportedError",
    "ModelLoadError",
    "ModelThrottledException",
    "NotSupportedError",
    "ReadTimeout",
    "ServerError",
    "ServerStartError",
    "StreamError",
    "StructuredOutputError",
    "StructuredOutputJSONError",
    "TimeoutException",
    "ToolCallParseError",
    "TransportError",
    "UnknownModelError",
    "structured_output_validation_error",
    "tool_call_parse_error",
]

_PAYLOAD_PREVIEW = 300  # characters of an offending payload kept in a message


def preview(payload: Any, limit: int = _PAYLOAD_PREVIEW) -> str:
    """Return a short printable preview of a payload for an error message."""
    try:
        text = payload if isinstance(payload, str) else repr(payload)
    except RecursionError:
        return f"({type(payload).__name__} nested too deeply to show)"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class LlamaCppError(Exception):
    """Root of every exception raised by llamacpp_lite."""


class LlamaCppWarning(UserWarning):
    """Root of the warnings issued by llamacpp_lite (e.g. a parameter llama.cpp does not have)."""


class InvalidRequestError(LlamaCppError, ValueError):
    """The request cannot be sent as given (bad messages, options or URL); nothing was sent."""


class InputTooLongError(InvalidRequestError):
    """An input has more tokens than the server can take in one piece, so nothing was computed.

    `embed` raises it for an input longer than the server's physical batch size (`-ub`, which
    bounds one embedded input) or than a slot's context. The server answers such a request with a
    bare 500 (or a context error) that does not say which input it was; this error names it. It
    is raised before sending when the token count is known (token-id input), else after the
    server refused the request and the inputs were counted with its tokenizer. Pass
    `truncate=True` to embed the first `limit` tokens instead.

    Attributes:
        index: The position of the input in what was passed.
        n_tokens: Its token count, by the server's tokenizer (special tokens included).
        limit: The most tokens the server takes in one input.
    """

    def __init__(self, message: str, *, index: int, n_tokens: int, limit: int) -> None:
        super().__init__(message)
        self.index = index
        self.n_tokens = n_tokens
        self.limit = limit


class TransportError(LlamaCppError):
    """The HTTP exchange failed before a complete answer arrived."""


class ConnectError(TransportError):
    """No connection could be made, or the server closed it before any byte of an answer.

    Either way the request was not processed (llama-server cancels the work of a client that
    disconnects), so retrying is safe. `DEFAULT_RETRY` has already retried refused, timed-out
    and unanswered connections 3 times; TLS and proxy failures are not retried.
    """


class Aborted(TransportError):
    """The call was aborted: `abort()` from another thread, or its async task was cancelled.

    The connection was shut down (llama-server cancels the work) and nothing was sent again.
    """


class TimeoutException(TransportError):
    """A timeout expired (the name does not shadow the builtin `TimeoutError`)."""


class ConnectTimeout(TimeoutException, ConnectError):
    """No connection within the connect timeout; the request was not sent."""


class ReadTimeout(TimeoutException):
    """The server sent no byte for longer than the read timeout.

    A busy llama-server queues a request without sending anything until a slot frees up, so
    size the read timeout for the longest queue you accept plus the prompt processing time.
    """


class DeadlineExceeded(TimeoutException):
    """The call's `deadline` (a bound on the whole call) passed; the connection was shut down."""


class APIError(LlamaCppError):
    """The server answered with an error status.

    Attributes:
        status_code: The HTTP status.
        error_type: The server's `error.type` (e.g. `invalid_request_error`), if it sent one.
        message: The server's `error.message`, or the start of the body.
        body: The decoded JSON body, or None when it was not JSON.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_type: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status_code} {error_type or 'error'}: {message}")
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.body = body


class BadRequestError(APIError):
    """The server rejected the request (400 or another 4xx); retrying it unchanged won't help."""


class ContextWindowOverflowException(BadRequestError):
    """The prompt does not fit the server's per-slot context.

    Attributes:
        n_prompt_tokens: How many tokens the prompt has, as counted by the server.
        n_ctx: The context size of one slot.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        body = kwargs.get("body")
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.n_prompt_tokens: int | None = error.get("n_prompt_tokens")
        self.n_ctx: int | None = error.get("n_ctx")


class UnknownModelError(BadRequestError):
    """The server has no model of that id or alias (a router answers 400 "model 'x' not found").

    Attributes:
        model_id: The id asked for.
        available: The ids the server offers, when they could be listed (else empty).
    """

    def __init__(self, message: str, *, model_id: str, available: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.model_id = model_id
        self.available = list(available)


class AuthenticationError(APIError):
    """The API key is missing or wrong (401), or not allowed (403)."""


class NotSupportedError(APIError):
    """The server has no such endpoint (404) or feature (501, e.g. `/metrics` not enabled)."""


class ModelThrottledException(APIError):
    """The server cannot take the request now (429, or 503 while the model loads); retry later."""


class ServerError(APIError):
    """The server failed (500). llama-server also answers 500 to many client mistakes."""


class ModalityNotSupportedError(ServerError):
    """The request carries image or audio input that the loaded model cannot take.

    Attributes:
        modality: `"vision"` or `"audio"`: the modality the server lacks.
    """

    def __init__(self, message: str, *, modality: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.modality = modality


class ModelLoadError(ServerError):
    """A router could not load the model: its process exited (bad file, too little memory...).

    The router's log says why; `GET /models` shows `"failed": true` and the exit code.

    Attributes:
        model_id: The model that failed.
        exit_code: The exit code of the model's process, when the router reported it.
    """

    def __init__(self, message: str, *, model_id: str, exit_code: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.model_id = model_id
        self.exit_code = exit_code


class StreamError(LlamaCppError):
    """An answer broke off, was malformed, or carried an error event inside a 200 stream.

    Attributes:
        payload: The offending data (truncated), when there was one.
        status_code: The HTTP status of the stream (200 for an error inside a stream).
        error: The server's `error` object, when the stream carried one.
    """

    def __init__(
        self,
        message: str,
        *,
        payload: str | None = None,
        status_code: int | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> None:
        detail = f" (payload: {preview(payload)})" if payload is not None else ""
        super().__init__(message + detail)
        self.payload = payload
        self.status_code = status_code
        self.error = error


class ToolCallParseError(ServerError):
    """llama-server could not parse the model's output in the format it expected (a tool call, usually).

    The server fails the whole request (a 500, or an error event inside a 200 stream) and does
    not return what the model wrote; `raw_output` holds what is known of it. To recover, ask
    again (the same request, or with a nudge such as a higher temperature or fewer tools), or
    take the answer's text (`text`) when a plain answer will do.

    Attributes:
        raw_output: The model's output as far as it is known: the unparsed rest of the output
            when the server's message carries it (older servers: "Failed to parse input at pos
            N: ..."), else what was streamed before the error: the text, then each tool call as
            `{"name": ..., "arguments": ...` with the arguments as far as they came (usually cut
            short; the closing `}` only when they are complete JSON), one per line. Empty when
            nothing is known.
        text: The text streamed before the error.
        tool_calls: The tool calls streamed before the error: dicts with `id`, `name` and
            `arguments` (the arguments JSON as far as it came).
        position: Where the server's parser stopped (older servers' "at pos N"), else None.
        error: The server's `error` object.
    """

    def __init__(self, message: str, *, raw_output: str = "", position: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_output = raw_output
        self.position = position
        self.text = ""
        self.tool_calls: tuple[dict[str, Any], ...] = ()
        body = kwargs.get("body")
        self.error: Optional[Mapping[str, Any]] = body.get("error") if isinstance(body, dict) else None

    def add_streamed(self, text: str, tool_calls: Sequence[Mapping[str, Any]]) -> None:
        """Record what was streamed before the error (`raw_output` is built from it if still empty)."""
        self.text = text
        self.tool_calls = tuple(dict(call) for call in tool_calls)
        if not self.raw_output:
            calls = [f'{{"name": {json.dumps(call.get("name"))}, "arguments": {call.get("arguments") or ""}'
                     + ("}" if _is_json(call.get("arguments")) else "")  # closed only when they are complete
                     for call in self.tool_calls]
            self.raw_output = "\n".join(part for part in (text, *calls) if part)


def _is_json(text: Any) -> bool:
    try:
        json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


class StructuredOutputError(LlamaCppError, ValueError):
    """The model's output did not parse or validate against the requested schema.

    A `ValueError`, as the `json.JSONDecodeError` and `pydantic.ValidationError` that Strands'
    own `structured_output` raises; see also `StructuredOutputJSONError`. When a pydantic
    model's validation failed, the exception is also that `pydantic.ValidationError` (where
    pydantic allows it; else it is the `__cause__`).

    Attributes:
        raw_text: The text of the last answer.
        errors: The validation errors (messages), empty when the text was not JSON at all. On
            the pydantic variant `errors()` also returns pydantic's error dicts.
        stop_reason: The last answer's stop reason; `max_tokens` means it was cut short.
        attempts: The raw text of every answer, in order (`structured_output(max_attempts=N)`).
    """

    def __init__(
        self,
        message: str,
        *,
        raw_text: str,
        errors: Sequence[str] = (),
        stop_reason: str | None = None,
        attempts: Sequence[str] = (),
    ) -> None:
        Exception.__init__(self, message)  # not super(): json.JSONDecodeError may follow in the MRO
        self.raw_text = raw_text
        self.errors = list(errors)
        self.stop_reason = stop_reason
        self.attempts = tuple(attempts) or (raw_text,)


class StructuredOutputJSONError(StructuredOutputError, json.JSONDecodeError):
    """The model's output is not JSON; also a `json.JSONDecodeError` (`msg`, `doc`, `pos`, `lineno`, `colno`).

    `doc` is the raw text; `msg` and `pos` are the JSON parser's.
    """

    def __init__(self, message: str, *, raw_text: str, json_message: str, pos: int, **kwargs: Any) -> None:
        StructuredOutputError.__init__(self, message, raw_text=raw_text, **kwargs)
        self.msg = json_message
        self.doc = raw_text
        self.pos = pos
        self.lineno = raw_text.count("\n", 0, pos) + 1
        self.colno = pos - raw_text.rfind("\n", 0, pos)


class _ErrorList(list[str]):
    """`StructuredOutputError.errors` of the pydantic variant: the messages, and callable as pydantic's `errors()`."""

    def __init__(self, messages: Sequence[str], details: Callable[..., Any]) -> None:
        super().__init__(messages)
        self._details = details

    def __call__(self, **kwargs: Any) -> Any:
        return self._details(**kwargs)


_PYDANTIC_CLASSES: dict[type, type] = {}


def _pydantic_compatible(validation_error_cls: type) -> type:
    """Return a `StructuredOutputError` subclass that is also `validation_error_cls` (cached)."""
    cls = _PYDANTIC_CLASSES.get(validation_error_cls)
    if cls is None:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            """pydantic builds the instance (`from_exception_data`); ours are set after."""

        cls = type("StructuredOutputError", (StructuredOutputError, validation_error_cls), {
            "__module__": __name__,
            "__init__": init,
            "__str__": BaseException.__str__,
            "__repr__": BaseException.__repr__,
        })
        _PYDANTIC_CLASSES[validation_error_cls] = cls
    return cls


def structured_output_validation_error(message: str, validation_error: Exception,
                                       **kwargs: Any) -> StructuredOutputError:
    """Return a `StructuredOutputError` that is also the given `pydantic.ValidationError`'s class.

    Falls back to a plain `StructuredOutputError` when the error cannot be rebuilt (the caller
    chains the original as `__cause__` either way).

    Args:
        message: The message.
        validation_error: The `pydantic.ValidationError` the model raised.
        **kwargs: `StructuredOutputError`'s keyword arguments.
    """
    errors = getattr(validation_error, "errors", None)
    try:
        details = errors(include_url=False)  # type: ignore[misc]
        cls = _pydantic_compatible(type(validation_error))
        error: Any = cls.from_exception_data(validation_error.title, details)  # type: ignore[attr-defined]
    except Exception:  # an error pydantic cannot rebuild (e.g. a custom error type); the cause still has it
        return StructuredOutputError(message, **kwargs)
    StructuredOutputError.__init__(error, message, **kwargs)
    error.errors = _ErrorList(error.errors, functools.partial(getattr(type(validation_error), "errors"), error))
    return error  # type: ignore[no-any-return]


class ServerStartError(LlamaCppError):
    """The managed llama-server could not be started (no binary, bad model, early exit, no health)."""


# ---------------------------------------------------------------------------------------------
# Classification of error answers: by HTTP status and the server's error.type, never by message.

_BY_TYPE: dict[str, type[APIError]] = {
    "exceed_context_size_error": ContextWindowOverflowException,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "not_found_error": NotSupportedError,
    "not_supported_error": NotSupportedError,
    "unavailable_error": ModelThrottledException,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotSupportedError,
    429: ModelThrottledException,
    500: ServerError,
    501: NotSupportedError,
    503: ModelThrottledException,
}


def _strands_compatible(cls: type[APIError]) -> type[APIError]:
    """Return `cls`, or a subclass that is also Strands' class of the same name if Strands is loaded."""
    strands_module = sys.modules.get("strands.types.exceptions")
    strands_cls = getattr(strands_module, cls.__name__, None) if strands_module else None
    if strands_cls is None:
        return cls
    cached = _STRANDS_CLASSES.get(cls)
    if cached is None:
        cached = type(cls.__name__, (cls, strands_cls), {"__module__": cls.__module__})
        _STRANDS_CLASSES[cls] = cached
    return cached


_STRANDS_CLASSES: dict[type[APIError], type[APIError]] = {}


def error_from_response(status_code: int, body_text: str) -> APIError:
    """Build the exception for an error answer.

    Args:
        status_code: The HTTP status (>= 400).
        body_text: The response body as text; llama-server sends `{"error": {...}}`.

    Returns:
        The most specific `APIError` subclass for the status and the server's `error.type`.
    """
    try:
        body: Any = json.loads(body_text) if body_text else None
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to decode
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    if message is None:
        message = preview(body_text.strip(), 500) if body_text.strip() else "(empty body)"
    cls = _BY_TYPE.get(error_type or "") or _BY_STATUS.get(status_code)
    if cls is None:
        cls = BadRequestError if status_code < 500 else ServerError
    if cls is ServerError:
        parse_error = tool_call_parse_error(status_code, error)
        if parse_error is not None:
            parse_error.body = body
            return parse_error
    cls = _strands_compatible(cls)
    return cls(message, status_code=status_code, error_type=error_type, body=body)


# ---------------------------------------------------------------------------------------------
# The one classification by message text. llama-server reports a model output that its chat
# parser cannot parse (usually a malformed tool call) as a plain `server_error`, with no type of
# its own, so only the message tells it apart. The pinned build (b11434) throws it at
# common/chat.cpp:1504 (`common_chat_peg_parse`): "The model produced output that does not match
# the expected <format> format"; earlier builds said "Failed to parse input at pos <N>: <the
# unparsed rest of the output>". Only these two exact shapes are matched.

_TOOL_CALL_PARSE = re.compile(r"The model produced output that does not match the expected (?P<format>.+) format")
_TOOL_CALL_PARSE_OLD = re.compile(r"Failed to parse input at pos (?P<pos>[0-9]+): (?P<rest>.*)", re.DOTALL)


def tool_call_parse_error(status_code: int, error: Mapping[str, Any]) -> Optional[ToolCallParseError]:
    """Return a `ToolCallParseError` when `error` is llama-server's output-parse failure, else None.

    Args:
        status_code: The error's status (the HTTP status, or the `code` of an in-stream error).
        error: The server's `error` object (`message`, `type`, `code`).
    """
    message = error.get("message")
    if error.get("type") not in ("server_error", None) or not isinstance(message, str):
        return None
    old = _TOOL_CALL_PARSE_OLD.fullmatch(message)
    if old is None and _TOOL_CALL_PARSE.fullmatch(message) is None:
        return None
    return ToolCallParseError(
        message,
        raw_output=old.group("rest") if old else "",
        position=int(old.group("pos")) if old else None,
        status_code=status_code,
        error_type="server_error",
        body={"error": dict(error)},
    )
