"""The least a Python client can do to read an SSE stream: the floor drivers' HTTP/1.1 layer.

A request is written in one ``send``; the response is read in large pieces (64 KiB ``recv``), its
chunked framing removed and its body split on blank lines, all on whole buffers rather than byte by
byte. `ResponseParser` is pure (bytes in, SSE payloads out) so the sync and asyncio floors share it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

__all__ = ["READ_SIZE", "ResponseParser", "Target", "chat_request"]

READ_SIZE = 65536
"""Bytes asked for per read."""


class Target:
    """Where a base URL points: host, port and path prefix.

    Args:
        base_url: ``http://host:port[/prefix]``.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")


def chat_request(target: Target, n: int, tools: bool, extra: dict[str, Any]) -> bytes:
    """Return the bytes of a streamed ``POST /v1/chat/completions`` for `n` tokens.

    Args:
        target: The server.
        n: ``max_tokens``.
        tools: Offer one tool (the fake server then streams a tool call).
        extra: More top-level request fields.

    Returns:
        The request line, headers and JSON body.
    """
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": n,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    payload = json.dumps(body).encode()
    head = (
        f"POST {target.prefix}/v1/chat/completions HTTP/1.1\r\n"
        f"Host: {target.host}:{target.port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class ResponseParser:
    """Parse one chunked ``text/event-stream`` response fed in arbitrary pieces.

    Attributes:
        done: True once the last chunk has been read.
        keep_alive: False if the server said ``Connection: close``.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._headers_read = False
        self._events = b""
        self.done = False
        self.keep_alive = True

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes read from the socket; return the complete SSE payloads they finish.

        Args:
            data: Bytes as read; empty means the server closed the connection.

        Returns:
            The ``data:`` payloads (the bytes after ``data: ``) of the events completed by `data`.

        Raises:
            ConnectionError: If the connection closed before the response ended.
            ValueError: If the status is not 200 or the body is not chunked.
        """
        if not data:
            raise ConnectionError("connection closed before the end of the response")
        buf = self._buf + data
        if not self._headers_read:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return []
            self._read_headers(buf[:end].decode("latin-1"))
            buf = buf[end + 4 :]
        pieces = []
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol], 16)
            end = eol + 2 + size
            if end + 2 > len(buf):
                break
            if size == 0:
                self.done = True
                break
            pieces.append(buf[eol + 2 : end])
            pos = end + 2
        self._buf = buf[pos:]
        events = (self._events + b"".join(pieces)).split(b"\n\n")
        self._events = events.pop()
        return [event[6:] for event in events]

    def _read_headers(self, head: str) -> None:
        """Check the status line and headers of the response."""
        lines = head.split("\r\n")
        if lines[0].split()[1] != "200":
            raise ValueError(f"unexpected status: {lines[0]}")
        headers = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") != "chunked":
            raise ValueError("expected a chunked response")
        self.keep_alive = headers.get("connection") != "close"
        self._headers_read = True
