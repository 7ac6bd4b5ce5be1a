"""Hostile servers, measured: every read is bounded, and bombs fail fast with flat memory.

Each test here failed on the client before the transport was rebuilt (most grew without
limit); the figures in README "Failure behaviour" come from `test_bomb_figures` (run with -s).
"""

from __future__ import annotations

import functools
import gzip
import itertools
import time
import tracemalloc
import zlib
from typing import Any, Callable, Iterator

import pytest

import llamacpp_lite as lite
from llamacpp_lite import Limits
from tests import fault_server as fs
from tests.helpers import elapsed

MiB = 1 << 20


def endless(piece: bytes) -> Iterator[bytes]:
    return itertools.repeat(piece)


def measured(function: Callable[..., Any], *args: Any) -> tuple:
    """Return (result or exception, seconds, peak traced memory in MiB) of a call."""
    tracemalloc.start()
    try:
        result, seconds = elapsed(function, *args)
        peak = tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()
    return result, seconds, peak


@functools.lru_cache(maxsize=None)
def bomb(encoding: str, mib: int, unit: bytes = b"\0") -> bytes:
    """`mib` MiB of `unit` repeated, compressed: about 1 KiB on the wire per MiB."""
    if encoding == "gzip":
        return gzip.compress(unit * MiB, 9) * mib  # several gzip members, one after another
    compressor = zlib.compressobj(9)
    return b"".join(compressor.compress(unit * MiB) for _ in range(mib)) + compressor.flush()


JSON_CALLS: dict[str, Callable[[Any], Any]] = {
    "/health": lambda model: model.health(),
    "/props": lambda model: model.props(),
    "/slots": lambda model: model.slots(),
    "/tokenize": lambda model: model.tokenize("hi"),
    "/apply-template": lambda model: model.count_tokens("hi", estimate=False),
}


@pytest.mark.parametrize("path", JSON_CALLS)
def test_an_endless_json_answer_fails_at_the_limit_with_flat_memory(server, make_model, path):
    server.default = fs.stream_body(200, endless(b"[1," * 20_000))
    model = make_model(server.url, limits=Limits(json_body=MiB))
    result, seconds, peak = measured(JSON_CALLS[path], model)
    assert isinstance(result, lite.StreamError) and "longer than the limit of 1048576 bytes" in str(result)
    assert peak < 6 and seconds < 5


def test_the_default_json_limit_is_16_mib(server, make_model):
    server.default = fs.stream_body(200, endless(b"[1," * 20_000))
    result, seconds, peak = measured(JSON_CALLS["/props"], make_model(server.url))
    assert isinstance(result, lite.StreamError) and "limit of 16777216 bytes" in str(result)
    assert peak < 40


def test_a_declared_length_over_the_limit_is_refused_before_reading(server, make_model):
    server.default = fs.stream_body(200, [b"{"], length=10**12)
    result, seconds = elapsed(make_model(server.url).props)
    assert isinstance(result, lite.StreamError) and "1000000000000 bytes, more than the limit" in str(result)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_json_bomb_stops_at_the_limit(server, make_model, encoding):
    server.default = fs.respond(200, bomb(encoding, 256), content_type="application/json",
                                headers=[("Content-Encoding", encoding)])
    result, seconds, peak = measured(JSON_CALLS["/props"], make_model(server.url))
    assert isinstance(result, lite.StreamError) and "decodes to more than 16777216 bytes" in str(result)
    assert peak < 40 and seconds < 5


def test_a_compressed_error_page_bomb_gives_the_status_error_from_its_start(server, make_model):
    server.default = fs.respond(500, bomb("gzip", 256), content_type="text/html", headers=[("Content-Encoding", "gzip")])
    result, seconds, peak = measured(JSON_CALLS["/props"], make_model(server.url))
    assert isinstance(result, lite.ServerError) and result.status_code == 500
    assert peak < 6 and seconds < 5


@pytest.mark.parametrize("name,handler,match", [
    ("one endless data line", lambda: fs.stream_body(200, itertools.chain([b"data: "], endless(b"x" * 65536)),
                                                      content_type="text/event-stream"),
     "larger than 16777216 bytes"),
    ("gzip bomb of zeros", lambda: fs.respond(200, bomb("gzip", 256), content_type="text/event-stream",
                                               headers=[("Content-Encoding", "gzip")]),
     "larger than 16777216 bytes"),
    ("gzip bomb of blank lines", lambda: fs.respond(200, bomb("gzip", 256, b"\n"), content_type="text/event-stream",
                                                     headers=[("Content-Encoding", "gzip")]),
     "lines arrived without an event"),
    ("endless comments", lambda: fs.stream_body(200, endless(b": keep-alive\n\n" * 4096),
                                                 content_type="text/event-stream"),
     "lines arrived without an event"),
])
def test_stream_bombs_fail_fast_with_flat_memory(server, make_model, name, handler, match):
    server.default = handler()
    result, seconds, peak = measured(lambda model: list(model.stream("hi")), make_model(server.url))
    assert isinstance(result, lite.StreamError) and match in str(result), result
    assert peak < 60 and seconds < 10


def test_a_long_stream_is_not_capped(server, make_model):
    chunk = {"choices": [{"index": 0, "delta": {"content": "x" * 1000}, "finish_reason": None}]}
    pieces = [fs.text_chunks()[0], *([chunk] * 20_000), *fs.text_chunks()[-2:]]  # 20 MB of text events
    server.default = fs.sse_stream(*pieces)
    result = make_model(server.url).chat("hi")
    assert len(result.text) == 20_000 * 1000


NESTED = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize("where,handler,error", [
    ("a stream event", lambda: fs.sse_stream(NESTED), lite.StreamError),
    ("an error body", lambda: fs.respond(500, NESTED, content_type="application/json"), lite.ServerError),
    ("a JSON answer", lambda: fs.respond(200, NESTED, content_type="application/json"), lite.StreamError),
])
def test_deeply_nested_json_is_a_library_error(server, make_model, where, handler, error):
    server.default = handler()
    model = make_model(server.url)
    call = (lambda: list(model.stream("hi"))) if where == "a stream event" else model.props
    with pytest.raises(error) as info:
        call()
    assert not isinstance(info.value, RecursionError) and info.value.__cause__ is None
    assert "nests too deeply" in str(info.value) or where == "an error body"


def test_bomb_figures(server, make_model, capsys):
    """Print the figures the README quotes (memory peak and time to error, default limits)."""
    cases = {
        "endless JSON answer (/props)": (fs.stream_body(200, endless(b"[1," * 20_000)), JSON_CALLS["/props"]),
        "gzip JSON bomb, 256 MiB in 260 KiB": (fs.respond(200, bomb("gzip", 256), content_type="application/json",
                                                          headers=[("Content-Encoding", "gzip")]), JSON_CALLS["/props"]),
        "one 300 MB data line": (fs.stream_body(200, itertools.chain([b"data: "], itertools.repeat(b"x" * 65536, 4600)),
                                                content_type="text/event-stream"), lambda m: list(m.stream("hi"))),
        "gzip stream bomb of blank lines": (fs.respond(200, bomb("gzip", 256, b"\n"), content_type="text/event-stream",
                                                       headers=[("Content-Encoding", "gzip")]),
                                            lambda m: list(m.stream("hi"))),
    }
    lines = []
    for name, (handler, call) in cases.items():
        server.default = handler
        result, seconds, peak = measured(call, make_model(server.url))
        assert isinstance(result, lite.StreamError), (name, result)
        lines.append(f"{name}: {type(result).__name__} after {seconds:.2f} s, peak {peak:.1f} MiB")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


# -- streams that end, and servers that never answer -------------------------------------------


def test_done_then_an_open_connection_is_a_complete_answer(server, make_model):
    server.default = fs.sse_stream(*fs.text_chunks("a", "b"), end="stall")  # [DONE], then neither end nor close
    result, seconds = elapsed(make_model(server.url, timeout=(2, 2)).chat, "hi")
    assert result.text == "ab" and result.stop_reason == "end_turn" and seconds < 1.0  # not a ReadTimeout after 2 s


def test_done_then_the_end_of_the_body_keeps_the_connection(server, make_model):
    server.default = fs.text_stream("a")
    model = make_model(server.url)
    assert [model.chat("hi").text for _ in range(3)] == ["a"] * 3
    assert server.connections == 1


def test_a_byte_order_mark_before_the_first_event_loses_nothing(server, make_model):
    body = b"\xef\xbb\xbf" + b"".join(fs.sse_event(chunk) for chunk in fs.text_chunks("first", "second"))
    server.default = fs.sse_stream(raw_chunks=[body[:2], body[2:5], body[5:], b"data: [DONE]\n\n"])
    assert make_model(server.url).chat("hi").text == "firstsecond"


def test_wait_until_ready_returns_within_its_timeout_against_a_silent_server(server, make_model):
    server.default = fs.silence()  # accepts, reads the request, never answers
    model = make_model(server.url, timeout=None)  # not even a read timeout
    result, seconds = elapsed(model.wait_until_ready, timeout=1.0)
    assert isinstance(result, lite.TimeoutException) and seconds < 1.5


def test_health_wait_returns_within_its_timeout_against_a_silent_server(server):
    import subprocess
    import sys

    server.default = fs.silence()
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "llamacpp_lite", "health", "--base-url", server.url, "--wait", "1"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 4 and "not ready within 1" in done.stderr
    assert time.monotonic() - start < 1.0 + 3.0  # the interpreter's start-up included


def test_context_window_limit_never_blocks_an_event_loop_and_a_failure_is_remembered(server, make_model):
    import asyncio

    server.default = fs.silence(1.0)
    model = make_model(server.url, timeout=(1, 0.5))

    async def read_it() -> tuple:
        start = time.monotonic()
        value = model.context_window_limit  # inside the loop: answers at once, asks in the background
        return value, time.monotonic() - start

    value, seconds = asyncio.run(read_it())
    assert value is None and seconds < 0.05
    assert server.wait_until(lambda: len(server.requests) == 1)
    time.sleep(0.8)  # the background look-up fails (read timeout)
    for _ in range(5):
        assert model.context_window_limit is None  # not asked again on every access
    assert len(server.requests) == 1


# -- the one private read path, and the public one it must match ---------------------------------


@pytest.fixture(params=["socket file", "urllib3 reads"])
def read_path(request, monkeypatch):
    """Run a test over both body readers: http.client's socket file read directly (the default),
    and urllib3's public reads (used where the socket file is not available, e.g. under mocks)."""
    if request.param == "urllib3 reads":
        monkeypatch.setattr("llamacpp_lite._transport._socket_file", lambda response: None)
    return request.param


@pytest.mark.parametrize("handler", [
    lambda: fs.sse_stream(*fs.text_chunks("a", "b", "c")),
    lambda: fs.sse_stream(raw_chunks=[b"".join(fs.sse_event(c) for c in fs.text_chunks("a", "b", "c")) + b"data: [DONE]\n\n"]),
    lambda: fs.sse_unframed(*fs.text_chunks("a", "b", "c")),
    lambda: fs.respond(200, gzip.compress(b"".join(fs.sse_event(c) for c in fs.text_chunks("a", "b", "c"))
                                          + b"data: [DONE]\n\n"),
                       content_type="text/event-stream", headers=[("Content-Encoding", "gzip")]),
], ids=["one event per chunk", "many events per chunk", "no chunked framing", "gzip"])
def test_both_read_paths_give_the_same_answer(server, make_model, read_path, handler):
    server.default = handler()
    result = make_model(server.url).chat("hi")
    assert (result.text, result.stop_reason, result.usage["outputTokens"]) == ("abc", "end_turn", 3)


def test_both_read_paths_bound_a_json_answer(server, make_model, read_path):
    server.default = fs.stream_body(200, endless(b"[1," * 20_000))
    with pytest.raises(lite.StreamError, match="limit of 1048576"):
        make_model(server.url, limits=Limits(json_body=MiB)).props()


def test_an_endless_503_body_does_not_hold_the_retry(server, make_model):
    loading = b'{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}'
    server.script(fs.stream_body(503, itertools.chain([loading], endless(b" " * 65536))), fs.text_stream("ok"))
    result, seconds = elapsed(make_model(server.url).chat, "hi")
    assert result.text == "ok" and seconds < 3  # the 503's body was not read to its (missing) end
