"""Pure reading of llama-server's event streams: body bytes in, decoded JSON payloads out.

sseclient-py is the parser of record: this module bounds what it is fed, decodes each `data:`
payload as JSON, stops at the stream's last event, and turns error events into `StreamError`.
No I/O: the transport hands in the body's bytes as they arrive.

One shortcut, for speed: llama-server frames every event the same way, `data: <json>\\n\\n`.
Where the bytes of a piece are exactly that (no `\\r`, no comment, no other field, no
multi-line data, no run of blank lines, valid UTF-8), its events are split with `str.split`
instead of line by line; anything else in a piece is handed to sseclient, and after the first
`\\r` sseclient reads the rest of the stream. Both give the same payloads and the same errors
(`tests/test_sse.py` checks it on generated streams cut at random places).
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import sseclient

from ._errors import LlamaCppError, StreamError, preview, tool_call_parse_error
from ._json import decode_json

__all__ = ["DONE", "EventSizeGuard", "iter_payloads", "split_events"]

DONE = "[DONE]"
"""The data of the last event of an OpenAI-style stream."""

_BOM = b"\xef\xbb\xbf"
_DATA = "data: "
_DONE_LINE = _DATA + DONE
_WHAT = "a stream event"


class EventSizeGuard:
    """The body's bytes as the event parser reads them, bounded between two events.

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


Event = Union[str, sseclient.Event]
"""One event: a canonical line `data: <payload>` (a `str`), or an event sseclient parsed."""


def split_events(pieces: Iterable[bytes]) -> Iterator[Iterable[Event]]:
    """Split the body into events, a batch per piece, without reading ahead.

    Each batch is either a list of canonical lines (`data: <payload>`, every one an event) or
    sseclient's events for the complete events of the piece (lazily: an error comes after the
    events before it). Bytes after the last blank line wait for the next piece; after the
    first `\\r`, and for an event the body's end cuts off, sseclient parses the rest.

    Args:
        pieces: The body's bytes as they arrive.

    Yields:
        Batches of events, in order.
    """
    pieces = iter(pieces)
    rest = b""  # an unfinished event
    for piece in pieces:
        if b"\r" in piece:  # CR or CRLF line ends: sseclient's rules for the rest of the stream
            yield sseclient.SSEClient(chain((rest + piece,), pieces)).events()
            return
        buffer = rest + piece if rest else piece
        end = buffer.rfind(b"\n\n")
        if end < 0:
            rest = buffer
            continue
        rest = buffer[end + 2 :]
        try:
            text: Optional[str] = buffer[:end].decode("utf-8")
        except UnicodeDecodeError:
            text = None  # sseclient raises the error, after the events before it
        if text is not None:
            lines = text.split("\n\n")
            n = len(lines)
            if text.startswith(_DATA) and text.count("\n") == 2 * n - 2 and text.count("\n\n" + _DATA) == n - 1:
                yield lines
                continue
        yield sseclient.SSEClient(iter((buffer[: end + 2],))).events()
    if rest:
        yield sseclient.SSEClient(iter((rest,))).events()


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
    for batch in split_events(guard):
        for event in batch:
            guard.event_seen()
            if isinstance(event, str):  # hot path: `data: <payload>`
                if event == _DONE_LINE and last is None:
                    return  # the answer is complete; what follows (if anything) is not read
                payload = decode_json(event, _WHAT, status_code=status_code, start=6)
                if type(payload) is dict and "error" in payload:
                    raise _server_error(payload, status_code)
            else:
                data = event.data
                if data == DONE and last is None:
                    return
                payload = decode_json(data, _WHAT, status_code=status_code)
                if event.event == "error" or (type(payload) is dict and "error" in payload):
                    raise _server_error(payload, status_code)
            yield payload
            if last is not None and last(payload):
                return
    raise StreamError(
        "the stream ended before [DONE]" if last is None else "the stream ended before its final event",
        status_code=status_code,
    )


def _server_error(payload: Any, status_code: int) -> LlamaCppError:
    """The error for an error event or an `{"error": ...}` payload: `ToolCallParseError` when the
    server could not parse the model's output (see `tool_call_parse_error`), else `StreamError`."""
    error = payload.get("error", payload) if type(payload) is dict else payload
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        parse_error = tool_call_parse_error(code if type(code) is int else 500, error)
        if parse_error is not None:
            return parse_error
    return StreamError(
        "the server reported an error during the stream: " + (message if isinstance(message, str) else preview(error)),
        status_code=status_code,
        error=error if isinstance(error, dict) else None,
    )
