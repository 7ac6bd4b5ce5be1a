"""Helpers for tests: llama-server's wire framing, mocked streams, and tool specs."""

from __future__ import annotations

import json
import struct
import time
import zlib
from typing import Any, Callable

import responses

MOCK_URL = "http://llama.test"
API_KEY = "canary-key-3f9d1c"  # a recognisable secret: tests check it never leaks


def sse_body(*payloads: Any, done: bool = True) -> bytes:
    """Render payloads the way llama-server frames them: `data: <json>\\n\\n`, then `[DONE]`."""
    parts = [f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads]
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def text_chunks(*pieces: str, finish: str = "stop", usage: dict | None = None) -> list:
    """A llama-server chat stream: role chunk, one chunk per piece, finish chunk, usage chunk."""
    chunks: list = [{"choices": [{"index": 0, "finish_reason": None, "delta": {"role": "assistant", "content": None}}]}]
    chunks += [{"choices": [{"index": 0, "finish_reason": None, "delta": {"content": p}}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "finish_reason": finish, "delta": {}}]})
    chunks.append({"choices": [], "usage": usage or {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                                     "total_tokens": 5 + len(pieces)}})
    return chunks


def add_stream(mock: responses.RequestsMock, *payloads: Any, done: bool = True, status: int = 200,
               url: str = MOCK_URL + "/v1/chat/completions", **kwargs: Any) -> Any:
    """Register a streaming chat answer."""
    return mock.add(responses.POST, url, body=sse_body(*payloads, done=done), status=status,
                    content_type="text/event-stream", **kwargs)


ToolSpec = dict
ADD_TOOL: ToolSpec = {
    "name": "add",
    "description": "Add two integers.",
    "inputSchema": {"json": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                             "required": ["a", "b"]}},
}
WEATHER_TOOL: ToolSpec = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                             "required": ["city"]}},
}


def events_of(kind: str) -> Callable[[list], list]:
    """Return a function selecting the events of one kind from a list."""
    return lambda events: [e[kind] for e in events if kind in e]


def tiny_png() -> bytes:
    """A valid 1x1 black PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


def tiny_wav() -> bytes:
    """A valid WAV file: 10 ms of silence, 16 kHz, 16-bit mono."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\x00\x00" * 160)
    return buffer.getvalue()


def elapsed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple:
    """Run `function` and return (its result or the exception it raised, seconds taken)."""
    start = time.monotonic()
    try:
        result = function(*args, **kwargs)
    except Exception as exc:  # returned for the test to inspect
        result = exc
    return result, time.monotonic() - start
