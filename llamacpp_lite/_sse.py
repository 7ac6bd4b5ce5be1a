"""Pure reading of llama-server's event streams: body bytes in, decoded JSON payloads out.

sseclient-py parses the events; this module bounds what it is fed, decodes each `data:` payload
as JSON, stops at the stream's last event, and turns error events into `StreamError`. No I/O:
the transport hands in the body's bytes as they arrive.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

import sseclient

from ._errors import StreamError, preview, tool_call_parse_error
from ._json import decode_json

__all__ = ["DONE", "EventSizeGuard", "iter_payloads"]

DONE = "[DONE]"
"""The data of the last event of an OpenAI-style stream."""

_BOM = b"\xef\xbb\xbf"


class EventSizeGuard:
    """The body's bytes as sseclient reads them, bounded between two events.

    sseclient joins the lines of an event until the blank line that ends it, copying as it
    goes; an event that never ends would grow without bound (and in quadratic time), and a flood
    of blank lines or comments would keep it busy forever without producing an event. This
    counts the bytes and line breaks fed since the last event and raises `StreamError` past
    `limit` bytes or `max_lines` line breaks. It also drops a UTF-8 byte-order mark before the
    first event, which the SSE standard ignores.

    Args:
        pieces: The body's bytes, decoded (framing and compression removed).
        limit: The most bytes from one event to the next.
        max_lines: The most line breaks from one event to the next.
    """

    def __init__(self, pieces: Iterable[bytes], limit: int, max_lines: int = 10_000) -> None:
        self._pieces = pieces
        self._limit = limit
        self._max_lines = max_lines
        self._bytes = 0
        self._lines = 0

    def event_seen(self) -> None:
        """An event was dispatched: start counting again."""
        self._bytes = self._lines = 0

    def __iter__(self) -> Iterator[bytes]:
        head: Optional[bytes] = b""  # the first bytes, until we know whether they start with a BOM
        for piece in self._pieces:
            if head is not None:
                head += piece
                if len(head) < len(_BOM) and _BOM.startswith(head):
                    continue
                piece, head = (head[len(_BOM):] if head.startswith(_BOM) else head), None
            self._bytes += len(piece)
            self._lines += piece.count(b"\n") + piece.count(b"\r")
            if self._bytes > self._limit:
                raise StreamError(f"a stream event is larger than {self._limit} bytes")
            if self._lines > self._max_lines:
                raise StreamError(f"more than {self._max_lines} lines arrived without an event")
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
    guard = EventSizeGuard(pieces, event_limit)
    for event in sseclient.SSEClient(iter(guard)).events():
        guard.event_seen()
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
