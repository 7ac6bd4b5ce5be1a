r"""llama-server's chat-completion wire format, pre-rendered for the fake server.

Pure functions, standard library only. The bytes follow section 2 of the observed-behaviour notes
(``shared/reference/llama-server-observed.md``): one ``data: <json>\\n\\n`` event per token with the
same ``id``/``created``/``model``/``system_fingerprint``/``object`` keys as a real build, a first
``delta:{"role":"assistant","content":null}`` event, a finish event with ``delta:{}``, an optional
usage event with ``choices:[]`` (carrying ``timings``), then ``data: [DONE]``. Each event is framed
as one HTTP/1.1 chunk, as llama-server's chunked content provider writes it.

Streams are built from a small vocabulary of pre-rendered events, so a 200k-token body costs one
``bytes.join`` and is cached. The drivers import ``expected_pieces`` to check what they received.
"""

from __future__ import annotations

import functools
import json
from typing import Any

__all__ = [
    "CREATED",
    "DONE_EVENT",
    "LAST_CHUNK",
    "MODEL",
    "STREAM_HEADERS",
    "TOOL_NAME",
    "chunk_frame",
    "completion_json",
    "expected_pieces",
    "stream_body",
    "stream_events",
]

MODEL = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
"""The `model` field; a path, as llama-server reports the `-m` argument."""

CREATED = 1795575872
COMPLETION_ID = "chatcmpl-jV4TqP0c8ZkWm3Ld9RxYb2NfGh7sEa1U"
TOOL_CALL_ID = "AbmjEEfydJ8fkU260vIjvDhWGCKC2y2T"
TOOL_NAME = "lookup"
_FINGERPRINT = "b1-7e4c0a9"
_PROMPT_TOKENS = 88

TEXT_TOKENS: tuple[str, ...] = (
    " The", " quick", " brown", " fox", ",", " jumps", " over", " the", " lazy", " dog",
    ".", "\n", " 42", " \u00e9t\u00e9", " \"quoted\"", " \u00fcber", " \u2014", " x",
)  # fmt: skip
"""Text token pieces, cycled; they include JSON escapes and non-ASCII as real output does."""

TOOL_WORDS: tuple[str, ...] = (" alpha", " beta", " 42", " \u00e9t\u00e9", " gamma", " delta", ",", " z")
"""Argument fragments between the fixed opening and closing pieces of a tool call."""

_TOOL_OPEN = ("{", '"q": "')
_TOOL_CLOSE = '"}'

STREAM_HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: llama.cpp\r\n"
    b"Access-Control-Allow-Origin: \r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Keep-Alive: timeout=5, max=100\r\n"
)
"""A streaming response's status line and headers, as a real build sends them (no final CRLF)."""

DONE_EVENT = b"data: [DONE]\n\n"
LAST_CHUNK = b"0\r\n\r\n"


def expected_pieces(tools: bool, n: int) -> list[str]:
    """Return the `n` text pieces, or tool-argument fragments, a stream of `n` tokens carries.

    Args:
        tools: True for tool-call argument fragments, False for text tokens.
        n: Number of tokens (for tools at least 3: the opening, quote and closing fragments).

    Returns:
        The pieces in order; for tools their concatenation is a JSON object.
    """
    if not tools:
        return [TEXT_TOKENS[i % len(TEXT_TOKENS)] for i in range(n)]
    if n < 3:
        raise ValueError("a tool-call stream needs at least 3 fragments")
    middle = [TOOL_WORDS[i % len(TOOL_WORDS)] for i in range(n - 3)]
    return [*_TOOL_OPEN, *middle, _TOOL_CLOSE]


def _dumps(obj: Any) -> str:
    """Serialise compactly without ASCII escaping, as llama-server (nlohmann::json) does."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _chunk_obj(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Return a `chat.completion.chunk` object with the real key order."""
    return {
        "choices": choices,
        "created": CREATED,
        "id": COMPLETION_ID,
        "model": MODEL,
        "system_fingerprint": _FINGERPRINT,
        "object": "chat.completion.chunk",
        **extra,
    }


def _delta_event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    """Render one `data:` event holding a single choice with `delta`."""
    choice = {"finish_reason": finish_reason, "index": 0, "delta": delta}
    return b"data: " + _dumps(_chunk_obj([choice])).encode() + b"\n\n"


def _usage(n: int) -> dict[str, Any]:
    """Return the `usage` object of an `n`-token completion."""
    return {
        "completion_tokens": n,
        "prompt_tokens": _PROMPT_TOKENS,
        "total_tokens": _PROMPT_TOKENS + n,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def _timings(n: int) -> dict[str, Any]:
    """Return a plausible `timings` object of an `n`-token completion at 1000 tokens/s."""
    return {
        "cache_n": 0,
        "prompt_n": _PROMPT_TOKENS,
        "prompt_ms": 12.7,
        "prompt_per_token_ms": 0.144,
        "prompt_per_second": 6914.4,
        "predicted_n": n,
        "predicted_ms": float(n),
        "predicted_per_token_ms": 1.0,
        "predicted_per_second": 1000.0,
    }


def chunk_frame(payload: bytes) -> bytes:
    """Frame `payload` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


@functools.cache
def _piece_event(tools: bool, piece: str, first: bool) -> bytes:
    """Render (cached) the event that carries one text piece or one tool-argument fragment."""
    if not tools:
        return _delta_event({"content": piece})
    call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
    if first:
        call = {"index": 0, "id": TOOL_CALL_ID, "type": "function", "function": {"name": TOOL_NAME, "arguments": piece}}
    return _delta_event({"tool_calls": [call]})


def stream_events(tools: bool, n: int, include_usage: bool) -> list[bytes]:
    """Return the SSE events of one streamed completion, unframed, in order.

    Args:
        tools: Stream one tool call's argument fragments instead of text.
        n: Number of tokens (text pieces or argument fragments).
        include_usage: Whether the request set `stream_options.include_usage`; if so a separate
            `choices:[]` usage event carries `usage` and `timings`, otherwise `timings` ride on the
            finish event.

    Returns:
        The role event, `n` token events, the finish event, the usage event if asked for, and
        `data: [DONE]`.
    """
    events = [_delta_event({"role": "assistant", "content": None})]
    events += [_piece_event(tools, piece, i == 0) for i, piece in enumerate(expected_pieces(tools, n))]
    reason = "tool_calls" if tools else "length"
    choice = {"finish_reason": reason, "index": 0, "delta": {}}
    if include_usage:
        events.append(b"data: " + _dumps(_chunk_obj([choice])).encode() + b"\n\n")
        usage = _chunk_obj([], usage=_usage(n), timings=_timings(n))
        events.append(b"data: " + _dumps(usage).encode() + b"\n\n")
    else:
        events.append(b"data: " + _dumps(_chunk_obj([choice], timings=_timings(n))).encode() + b"\n\n")
    events.append(DONE_EVENT)
    return events


@functools.lru_cache(maxsize=32)
def stream_body(tools: bool, n: int, include_usage: bool) -> bytes:
    """Return (cached) a whole chunked response body: every event framed, then the last chunk."""
    return b"".join(map(chunk_frame, stream_events(tools, n, include_usage))) + LAST_CHUNK


def completion_json(tools: bool, n: int) -> bytes:
    """Return the body of a non-streamed (`stream:false`) answer of `n` tokens.

    Args:
        tools: Answer with one tool call instead of text.
        n: Number of tokens.

    Returns:
        A `chat.completion` JSON object as UTF-8 bytes.
    """
    text = "".join(expected_pieces(tools, n))
    if tools:
        call = {"type": "function", "function": {"name": TOOL_NAME, "arguments": text}, "id": TOOL_CALL_ID}
        message: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [call]}
    else:
        message = {"role": "assistant", "content": text}
    choice = {"finish_reason": "tool_calls" if tools else "length", "index": 0, "message": message}
    obj = _chunk_obj([choice], usage=_usage(n), timings=_timings(n))
    obj["object"] = "chat.completion"
    return _dumps(obj).encode()
