"""Property-based tests: random and mutated llama-server streams through the real reading path.

Streams are generated like llama-server's (text, reasoning, tool calls, finish, usage, raw UTF-8
JSON), then optionally damaged (bytes cut, dropped, inserted or flipped; a JSON value replaced by
one of the wrong shape; `[DONE]` left out), then split at random byte boundaries and fed through
the reading path (HTTP de-chunking, sseclient, JSON decoding, `[DONE]` and error handling)
into `translate_chunks`. The only allowed outcomes: a well-formed event sequence, or a
`LlamaCppError`. An undamaged stream must give exactly the events of the pure translation.

Deterministic (`derandomize=True`) and bounded, so CI runs the same examples every time.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from llamacpp_lite import LlamaCppError, LlamaCppModel
from llamacpp_lite._events import STOP_REASONS, translate_chunks
from llamacpp_lite._framing import Dechunker
from llamacpp_lite._sse import iter_payloads
from tests import fault_server as fs

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- generating llama-server streams -------------------------------------------------------------

pieces = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
segment = st.one_of(
    st.tuples(st.just("text"), st.lists(pieces, min_size=1, max_size=4)),
    st.tuples(st.just("reasoning"), st.lists(pieces, min_size=1, max_size=3)),
    st.tuples(st.just("tool"), st.text("abcdefgh_", min_size=1, max_size=8),
              st.lists(pieces, min_size=1, max_size=4)),
)


@st.composite
def llama_streams(draw: Any, usage: bool | None = None) -> list:
    """A list of chunk dicts shaped like llama-server's chat stream (with a usage chunk or not)."""
    def chunk(delta: dict, finish: Any = None, **extra: Any) -> dict:
        return {"choices": [{"finish_reason": finish, "index": 0, "delta": delta}], "created": 1,
                "id": "chatcmpl-x", "model": "m", "object": "chat.completion.chunk", **extra}

    chunks = [chunk({"role": "assistant", "content": None})]
    tools = 0
    for kind, *rest in draw(st.lists(segment, max_size=5)):
        if kind == "text":
            chunks += [chunk({"content": piece}) for piece in rest[0]]
        elif kind == "reasoning":
            chunks += [chunk({"reasoning_content": piece}) for piece in rest[0]]
        else:
            name, fragments = rest
            first = {"index": tools, "id": f"call{tools}", "type": "function",
                     "function": {"name": name, "arguments": fragments[0]}}
            chunks.append(chunk({"tool_calls": [first]}))
            chunks += [chunk({"tool_calls": [{"index": tools, "function": {"arguments": f}}]}) for f in fragments[1:]]
            tools += 1
    timings = {"prompt_n": 5, "cache_n": 1, "predicted_n": len(chunks), "predicted_per_second": 100.0}
    usage = draw(st.booleans()) if usage is None else usage
    finish = chunk({}, draw(st.sampled_from(sorted(STOP_REASONS))), **({} if usage else {"timings": timings}))
    chunks.append(finish)
    if usage:
        chunks.append({"choices": [], "usage": {"completion_tokens": 3, "prompt_tokens": 5, "total_tokens": 8,
                                                 "prompt_tokens_details": {"cached_tokens": 1}}, "timings": timings})
    return chunks


def render(chunks: list, done: bool = True) -> bytes:
    """Frame chunks as llama-server does: raw UTF-8 JSON, `data: ...\\n\\n`, then `[DONE]`."""
    body = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


WRONG_VALUES = ["x", "", -1, 2.5, None, True, [], {}, [1, "a"], {"a": None}]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
JSON_PATHS = [
    (), ("choices",), ("choices", 0), ("choices", 0, "delta"), ("choices", 0, "delta", "content"),
    ("choices", 0, "delta", "reasoning_content"), ("choices", 0, "delta", "tool_calls"),
    ("choices", 0, "delta", "tool_calls", 0), ("choices", 0, "delta", "tool_calls", 0, "index"),
    ("choices", 0, "delta", "tool_calls", 0, "function"), ("choices", 0, "delta", "tool_calls", 0, "function", "name"),
    ("choices", 0, "delta", "tool_calls", 0, "function", "arguments"), ("choices", 0, "finish_reason"),
    ("choices", 0, "logprobs"), ("usage",), ("usage", "prompt_tokens"), ("usage", "prompt_tokens_details"),
    ("timings",), ("timings", "prompt_n"), ("error",),
]


def has_container(chunk: Any, path: tuple) -> bool:
    """Tell whether `chunk` has the container that `path`'s last key lives in."""
    node = chunk
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node))


def replace_at(chunk: Any, path: tuple, value: Any) -> Any:
    """Return `chunk` with the value at `path` replaced (or added to the deepest container there)."""
    if not path:
        return value
    chunk = copy.deepcopy(chunk)
    node = chunk
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return chunk
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = value
    return chunk


@st.composite
def wrong_shapes(draw: Any, path: tuple) -> bytes:
    """A llama-server stream with the value at `path` replaced, in one to three chunks that have it."""
    chunks = draw(llama_streams(usage=True if path[:1] == ("usage",) else None))
    targets = [i for i, chunk in enumerate(chunks) if has_container(chunk, path)] or [0]
    for index in draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3, unique=True)):
        chunks[index] = replace_at(chunks[index], path, draw(st.sampled_from(WRONG_VALUES) | json_values))
    return render(chunks)


@st.composite
def damaged_bodies(draw: Any) -> bytes:
    """A llama-server stream, damaged in one to three ways (or not at all)."""
    chunks = draw(llama_streams())
    done = True
    for _ in range(draw(st.integers(0, 3))):
        if not chunks:
            break
        kind = draw(st.sampled_from(["json", "drop", "duplicate", "no-done", "bytes"]))
        index = draw(st.integers(0, len(chunks) - 1))
        if kind == "json":
            chunks[index] = replace_at(chunks[index], draw(st.sampled_from(JSON_PATHS)), draw(json_values))
        elif kind == "drop":
            del chunks[index]
        elif kind == "duplicate":
            chunks.insert(index, chunks[index])
        elif kind == "no-done":
            done = False
    body = render(chunks, done)
    if draw(st.booleans()):  # byte-level damage
        where = draw(st.integers(0, max(0, len(body) - 1)))
        how = draw(st.sampled_from(["cut", "delete", "insert", "flip"]))
        if how == "cut":
            body = body[:where]
        elif how == "delete":
            body = body[:where] + body[where + draw(st.integers(1, 8)):]
        elif how == "insert":
            body = body[:where] + draw(st.binary(min_size=1, max_size=6)) + body[where:]
        elif body:
            body = body[:where] + bytes([body[where] ^ draw(st.integers(1, 255))]) + body[where + 1:]
    return body


@st.composite
def split(draw: Any, body: bytes) -> list:
    """Cut `body` at random byte boundaries (inside UTF-8 characters and `\\n\\n` too)."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=12))) if len(body) > 1 else []
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]


# -- the reading path, without sockets ------------------------------------------------------------


def read_events(reads: list) -> list:
    """Feed network reads, sent as HTTP chunks, through the reading path `LlamaCppModel.stream` uses:
    the de-chunker, the SSE reader (sseclient, JSON decoding, `[DONE]` and error handling) and
    the translator."""
    wire = b"".join(b"%x\r\n%s\r\n" % (len(read), read) for read in reads if read) + b"0\r\n\r\n"
    dechunker = Dechunker()
    pieces = (dechunker.feed(wire[i:i + 7]) for i in range(0, len(wire), 7))
    chunks = iter_payloads(pieces, event_limit=1 << 20)
    try:
        return list(translate_chunks(chunks, started=0.0, clock=lambda: 0.0))
    finally:
        chunks.close()


def assert_well_formed(events: list) -> None:
    """messageStart, blocks that open, carry deltas of their own kind and close, messageStop, metadata."""
    assert all(type(event) is dict and len(event) == 1 for event in events)
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert set(events[-2]) == {"messageStop"}
    assert events[-2]["messageStop"]["stopReason"] in {*STOP_REASONS.values(), "stop_sequence"}
    meta = events[-1]["metadata"]
    usage = meta["usage"]
    assert {"inputTokens", "outputTokens", "totalTokens"} <= set(usage)
    assert all(type(value) is int for value in usage.values()), usage
    assert type(meta["metrics"]["latencyMs"]) is int and isinstance(meta["timings"], dict)
    open_kind = None
    for event in events[1:-2]:
        (key, value), = event.items()
        if key == "contentBlockStart":
            assert open_kind is None
            tool = value["start"].get("toolUse")
            if tool is not None:
                assert type(tool["name"]) is str and tool["name"] and type(tool["toolUseId"]) is str
            open_kind = "toolUse" if tool is not None else "content"
        elif key == "contentBlockDelta":
            (kind, delta), = value["delta"].items()
            if open_kind == "toolUse":
                assert kind == "toolUse" and type(delta["input"]) is str
            else:
                assert open_kind is not None and kind in ("text", "reasoningContent")
                open_kind = kind if open_kind == "content" else open_kind
                assert kind == open_kind
                assert type(delta if kind == "text" else delta["text"]) is str
        else:
            assert key == "contentBlockStop" and value == {} and open_kind is not None
            open_kind = None
    assert open_kind is None


def check(reads: list) -> None:
    try:
        events = read_events(reads)
    except LlamaCppError:
        return
    assert_well_formed(events)


@FUZZ
@given(st.data())
def test_an_undamaged_stream_split_anywhere_gives_the_pure_translation(data):
    chunks = data.draw(llama_streams())
    reads = data.draw(split(render(chunks)))
    expected = list(translate_chunks(chunks, started=0.0, clock=lambda: 0.0))
    assert read_events(reads) == expected
    assert_well_formed(expected)


# Found by this test: a TypeError escapes `_events.translate_chunks`. The fix is for _events.py
# (not part of #5's files): see the patch in the #5 report; then drop these marks.
def _path_param(path: tuple) -> Any:
    return pytest.param(path, id=".".join(map(str, path)) or "chunk")


@pytest.mark.parametrize("path", [_path_param(path) for path in JSON_PATHS])
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: quick even when it fails
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_a_field_of_the_wrong_shape_gives_well_formed_events_or_a_library_error(path, data):
    check(data.draw(split(data.draw(wrong_shapes(path)))))


@FUZZ
@given(st.data())
def test_a_damaged_stream_gives_well_formed_events_or_a_library_error(data):
    check(data.draw(split(data.draw(damaged_bodies()))))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_escape_as_a_foreign_exception(reads):
    check(reads)
    check([b"data: " + read for read in reads])


# -- the same, over a real socket --------------------------------------------------------------


@pytest.fixture(scope="module")
def socket_model():
    server = fs.FaultServer()
    model = LlamaCppModel(server.url, timeout=(2, 2), retry=None)
    yield server, model
    model.close()
    server.stop()


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_streams_over_a_socket_in_http_chunks(socket_model, data):
    server, model = socket_model
    reads = data.draw(split(data.draw(damaged_bodies())))
    server.script(fs.sse_stream(raw_chunks=reads))
    try:
        events = list(model.stream("hi"))
    except LlamaCppError:
        return
    assert_well_formed(events)
