"""Pure reading of llama-server's event streams: body bytes in, decoded JSON payloads out.

sseclient-py parses the events; this module bounds what it is fed, decodes each `data:` payload
as JSON, stops at the stream's last event, and turns error events into `StreamError`. No I/O:
the transport hands in the body's bytes as they arrive.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import sseclient

from ._errors import StreamError, preview, tool_call_parse_error
from ._json import decode_json

__all__ = ["DONE", "EventSizeGuard", "iter_payloads"]

DONE = "[DONE]"
"""The data of the last event of an OpenAI-style stream."""

_BOM = b"\xef\xbb\xbf"
_DELIMITERS = (b"\n\n", b"\r\r", b"\r\n\r\n")


class EventSizeGuard:
    """The body's bytes as sseclient reads them, with each event's size bounded.

    sseclient joins the lines of an event until the blank line that ends it, copying as it goes;
    an event that never ends would grow without bound (and quadratically in time). This counts
    the bytes since the last event boundary and raises `StreamError` past `limit`. It also
    drops a UTF-8 byte-order mark before the first event, which the SSE standard ignores.

    Args:
        pieces: The body's bytes, decoded (framing and compression removed).
        limit: The most bytes one event may have.
        close: Called by `close()` (sseclient's event-source protocol).
    """

    def __init__(self, pieces: Iterable[bytes], limit: int, close: Callable[[], None] = lambda: None) -> None:
        self._pieces = pieces
        self._limit = limit
        self.close = close

    def __iter__(self) -> Iterator[bytes]:
        limit = self._limit
        pending = 0  # bytes since the last event boundary
        tail = b""  # the last bytes of the previous piece, for boundaries split across pieces
        head = b""  # the first bytes, until we know whether they start with a BOM
        for piece in self._pieces:
            if head is not None:
                head += piece
                if len(head) < len(_BOM) and _BOM.startswith(head):
                    continue
                piece = head[len(_BOM):] if head.startswith(_BOM) else head
                head = None  # type: ignore[assignment]
            window = tail + piece
            boundary = -1
            for delimiter in _DELIMITERS:
                found = window.rfind(delimiter)
                if found >= 0 and found + len(delimiter) > boundary:
                    boundary = found + len(delimiter)
            if boundary < 0:
                pending += len(piece)
            else:
                pending = len(window) - boundary
            if pending > limit:
                raise StreamError(f"a stream event is larger than {limit} bytes")
            tail = window[-3:]
            yield piece
        if head:
            yield head


def iter_payloads(
    pieces: Iterable[bytes],
    *,
    event_limit: int,
    last: Callable[[Any], bool] | None = None,
    status_code: int = 200,
) -> Iterator[Any]:
    """Yield the decoded JSON payload of each event until the stream's last one.

    Args:
        pieces: The body's bytes as they arrive.
        event_limit: The most bytes one event may have.
        last: For streams without `[DONE]` (llama.cpp's native endpoints): tells the final
            payload, after which nothing more is read. With None, the stream ends at `[DONE]`.
        status_code: The HTTP status, kept on errors.

    Raises:
        ToolCallParseError: For an error event saying the server could not parse the model's
            output (see `tool_call_parse_error`).
        StreamError: For an event that is not JSON, another `error` event or object, an event
            over `event_limit`, or a stream that ends before its last event.
    """
    try:
        yield from _payloads(pieces, event_limit, last, status_code)
    except UnicodeDecodeError as exc:  # sseclient decodes each line
        around = exc.object[max(0, exc.start - 60) : exc.end + 60]
        raise StreamError(f"the stream is not valid UTF-8: {exc}", payload=repr(around), status_code=status_code) from None


def _payloads(pieces: Iterable[bytes], event_limit: int, last: Callable[[Any], bool] | None,
              status_code: int) -> Iterator[Any]:
    for event in sseclient.SSEClient(EventSizeGuard(pieces, event_limit)).events():
        data = event.data
        if last is None and data == DONE:
            return  # the answer is complete; what follows (if anything) is not read
        payload = decode_json(data, "a stream event", status_code=status_code)
        if event.event == "error" or (type(payload) is dict and "error" in payload):
            error = payload.get("error", payload) if type(payload) is dict else payload
            message = error.get("message") if isinstance(error, dict) else None
            if isinstance(error, dict):
                code = error.get("code")
                parse_error = tool_call_parse_error(code if type(code) is int else 500, error)
                if parse_error is not None:
                    raise parse_error
            raise StreamError(
                "the server reported an error during the stream: "
                + (message if isinstance(message, str) else preview(error)),
                status_code=status_code,
                error=error if isinstance(error, dict) else None,
            )
        yield payload
        if last is not None and last(payload):
            return
    raise StreamError(
        "the stream ended before [DONE]" if last is None else "the stream ended before its final event",
        status_code=status_code,
    )
