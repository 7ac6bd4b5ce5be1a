"""Reliability against a real, fault-injecting socket server (tests/fault_server.py).

Retries (counted on the server), timeouts (measured), broken and hostile streams, the async
shim under the same faults and under cancellation, secrets, TLS, redirects, and load. Only
127.0.0.1; every wait is bounded; the whole module runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import logging
import shutil
import ssl
import subprocess
import threading
import time
import traceback

import pytest
import urllib3.exceptions
import urllib3.util.retry

import llamacpp_lite as lite
from llamacpp_lite import DEFAULT_RETRY, AsyncLlamaCppModel, LlamaCppModel
from tests import fault_server as fs
from tests.helpers import elapsed

LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
CHUNKS = fs.text_chunks("a", "b")  # role, "a", "b", finish, usage
FAST = DEFAULT_RETRY.new(status=4, backoff_factor=0.01, backoff_jitter=0.0)  # 4 counted 503 retries, tiny waits
CANARY = "canary-secret-7c1e5b"
HTML = "<html><body><h1>502 Bad Gateway</h1>" + "<p>nginx</p>" * 200 + "</body></html>"


def counting(policy):
    """Return a copy of `policy` that logs what each retry decision was about, and the log."""
    log = []

    class Counting(type(policy)):
        def increment(self, *args, **kwargs):
            log.append(kwargs.get("error") or getattr(kwargs.get("response"), "status", None))
            return super().increment(*args, **kwargs)

    counted = copy.copy(policy)
    counted.__class__ = Counting
    return counted, log


def gaps(server):
    return [round(b - a, 2) for a, b in zip(server.request_times, server.request_times[1:])]


# -- retries -----------------------------------------------------------------------------------


def test_the_default_policy_is_what_the_readme_says():
    assert (DEFAULT_RETRY.connect, DEFAULT_RETRY.read, DEFAULT_RETRY.status, DEFAULT_RETRY.other) == (3, 0, None, 0)
    assert DEFAULT_RETRY.status_wait == 120.0 and DEFAULT_RETRY.status_since is None
    assert set(DEFAULT_RETRY.status_forcelist) == {503} and DEFAULT_RETRY.allowed_methods is None
    assert (DEFAULT_RETRY.backoff_factor, DEFAULT_RETRY.backoff_max, DEFAULT_RETRY.backoff_jitter) == (0.25, 8.0, 0.25)
    assert DEFAULT_RETRY.respect_retry_after_header and not DEFAULT_RETRY.raise_on_status


def test_503_while_loading_is_retried_with_backoff_then_the_stream_succeeds(server, make_model):
    server.script(fs.respond_json(503, LOADING), fs.respond_json(503, LOADING), fs.text_stream("ok"))
    events = list(make_model(server.url).stream("hi"))  # stream=True: urllib3 retries before any byte
    assert {"contentBlockDelta": {"delta": {"text": "ok"}}} in events and "metadata" in events[-1]
    assert len(server.requests) == 3 and server.connections == 1  # the 503s are drained, the connection reused
    first, second = gaps(server)
    assert first < 0.3 and 0.45 <= second <= 1.5  # no wait, then 0.25 s x 2 + jitter up to 0.25 s


def test_503_retries_are_bounded_and_the_last_503_carries_the_server_message(server, make_model):
    server.script(*[fs.respond_json(503, LOADING)] * 9)
    with pytest.raises(lite.ModelThrottledException) as info:
        list(make_model(server.url, retry=FAST).stream("hi"))
    error = info.value
    assert (error.status_code, error.error_type, error.message) == (503, "unavailable_error", "Loading model")
    assert len(server.requests) == 1 + FAST.status


PATIENT = DEFAULT_RETRY.new(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.0, status_wait=1.0)


def test_a_loading_model_is_waited_for_by_time_not_by_a_count(server, make_model):
    server.script(*[fs.respond_json(503, LOADING)] * 12, fs.text_stream("ok"))  # a count of 4 would give up
    assert make_model(server.url, retry=PATIENT.new(status_wait=30)).chat("hi").text == "ok"
    assert len(server.requests) == 13 and max(gaps(server)) <= 0.3  # back-off capped at backoff_max


def test_the_wait_for_a_loading_model_ends_after_status_wait_seconds(server, make_model):
    server.script(*[fs.respond_json(503, LOADING)] * 200)
    result, seconds = elapsed(make_model(server.url, retry=PATIENT).chat, "hi")
    assert isinstance(result, lite.ModelThrottledException) and result.message == "Loading model"
    assert 0.95 <= seconds < 2.5  # the wait is 1 s from the first 503; the last attempt comes as it ends
    assert 5 <= len(server.requests) < 200


def test_a_refused_connection_stays_quick_to_fail(make_model):
    server = fs.FaultServer(listen=False)  # bound, not listening: connecting is refused
    try:
        result, seconds = elapsed(make_model(server.url).chat, "hi")
    finally:
        server.stop()
    assert type(result) is lite.ConnectError and seconds < 5  # 3 retries, not 120 s


def test_health_reports_a_loading_model_at_once(server, make_model):
    server.script(*[fs.respond_json(503, LOADING)] * 3, fs.respond_json(200, {"status": "ok"}))
    result, seconds = elapsed(make_model(server.url).health)  # DEFAULT_RETRY: the 503 is the answer
    assert isinstance(result, lite.ModelThrottledException) and seconds < 0.5 and len(server.requests) == 1
    make_model(server.url).wait_until_ready(timeout=5, interval=0.01)  # polls: one 503 per poll
    assert len(server.requests) == 4


def test_each_request_gets_the_whole_wait(server, make_model):
    model = make_model(server.url, retry=PATIENT.new(status_wait=0.5))
    for _ in range(2):
        server.script(*[fs.respond_json(503, LOADING)] * 4, fs.text_stream("ok"))
        time.sleep(0.3)
        assert model.chat("hi").text == "ok"  # a clock shared between requests would have run out
    assert PATIENT.status_since is None


def test_a_deadline_bounds_the_wait_for_a_loading_model(server, make_model):
    server.script(*[fs.respond_json(503, LOADING)] * 200)
    result, seconds = elapsed(make_model(server.url).chat, "hi", deadline=0.6)  # DEFAULT_RETRY: 120 s
    assert type(result) is lite.DeadlineExceeded and 0.55 <= seconds < 1.5


def test_retry_after_is_honoured(server, make_model):
    server.script(fs.respond_json(503, LOADING, headers=[("Retry-After", "1")]), fs.text_stream("ok"))
    assert make_model(server.url).chat("hi").text == "ok"
    assert len(server.requests) == 2 and 0.95 <= gaps(server)[0] <= 2.0


@pytest.fixture
def recorded_sleeps(monkeypatch):
    """Record the waits the retry policy asks for instead of sleeping."""
    sleeps = []
    monkeypatch.setattr("llamacpp_lite._transport.Call.wait", lambda call, seconds: sleeps.append(seconds))
    return sleeps


def test_a_retry_after_longer_than_the_wait_gives_up_at_once(server, make_model, recorded_sleeps):
    server.script(fs.respond_json(503, LOADING, headers=[("Retry-After", "3600")]), fs.text_stream("unused"))
    result, seconds = elapsed(make_model(server.url).chat, "hi")
    assert isinstance(result, lite.ModelThrottledException) and seconds < 1.0
    assert len(server.requests) == 1 and not recorded_sleeps


def test_a_retry_after_is_honoured_up_to_the_time_left(server, make_model, recorded_sleeps):
    server.script(fs.respond_json(503, LOADING, headers=[("Retry-After", "30")]), fs.text_stream("ok"))
    assert make_model(server.url).chat("hi").text == "ok"
    assert recorded_sleeps and 29 <= recorded_sleeps[0] <= 30  # not capped at backoff_max (8 s)


def test_without_status_wait_a_huge_retry_after_is_capped_at_backoff_max(server, make_model, recorded_sleeps):
    server.script(fs.respond_json(503, LOADING, headers=[("Retry-After", "3600")]), fs.text_stream("ok"))
    assert make_model(server.url, retry=DEFAULT_RETRY.new(status=4, status_wait=None)).chat("hi").text == "ok"
    assert recorded_sleeps and max(recorded_sleeps) <= DEFAULT_RETRY.backoff_max  # plain urllib3: 3600 s


def test_a_garbled_retry_after_falls_back_to_backoff(server, make_model, recorded_sleeps):
    server.script(fs.respond_json(503, LOADING, headers=[("Retry-After", "soon")]), fs.text_stream("ok"))
    assert make_model(server.url).chat("hi").text == "ok"  # plain urllib3: InvalidHeader -> InvalidRequestError
    assert len(server.requests) == 2


@pytest.mark.parametrize("status,body,expected", [
    (400, {"error": {"code": 400, "message": "Field 'temperature': type must be number",
                     "type": "invalid_request_error"}}, lite.BadRequestError),
    (401, {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}},
     lite.AuthenticationError),
    (404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}, lite.NotSupportedError),
    (500, {"error": {"code": 500, "message": "Cannot use both json_schema and grammar", "type": "server_error"}},
     lite.ServerError),
    (429, {"error": {"code": 429, "message": "slow down", "type": "rate_limit_error"}}, lite.ModelThrottledException),
])
def test_client_mistakes_and_500_are_never_retried(server, make_model, status, body, expected):
    server.script(fs.respond_json(status, body), fs.text_stream("never sent"))
    with pytest.raises(expected) as info:
        list(make_model(server.url).stream("hi"))
    assert info.value.status_code == status and info.value.message == body["error"]["message"]
    assert len(server.requests) == 1


def test_connection_refused_is_retried_until_the_server_listens(make_model):
    server = fs.FaultServer(listen=False)  # bound, not listening: connecting is refused
    try:
        policy, log = counting(DEFAULT_RETRY.new(connect=20, backoff_factor=0.05, backoff_max=0.1, backoff_jitter=0))
        threading.Timer(0.3, server.listen).start()
        result, seconds = elapsed(make_model(server.url, retry=policy).chat, "hi")
        assert not isinstance(result, Exception), result
        assert isinstance(log[0], urllib3.exceptions.NewConnectionError) and len(log) >= 2
        assert 0.3 <= seconds < 2 and server.connections == 1 and len(server.requests) == 1
    finally:
        server.stop()


def test_connection_refused_default_retries_then_connect_error(make_model):
    server = fs.FaultServer(listen=False)
    try:
        policy, log = counting(DEFAULT_RETRY)
        result, seconds = elapsed(make_model(server.url, retry=policy).chat, "hi")
        assert isinstance(result, lite.ConnectError) and "cannot connect" in str(result)
        assert len(log) == 1 + DEFAULT_RETRY.connect  # 3 retries, then the 4th failure gives up
        assert 1.5 <= seconds <= 3.5  # waits 0 + 0.5 + 1.0 s, plus jitter
        result, seconds = elapsed(make_model(server.url, retry=None).chat, "hi")
        assert isinstance(result, lite.ConnectError) and seconds < 0.3
    finally:
        server.stop()


def test_a_connection_reset_before_the_request_was_read_is_retried(server, make_model):
    server.script(fs.reset_before_request())
    assert make_model(server.url).chat("hi").text == "hi|0;hi|1;hi|2;"
    assert server.connections == 2 and len(server.requests) == 1


def test_a_pooled_connection_dropped_as_it_is_reused_is_retried(server, make_model):
    # The race RetryPolicy exists for: llama-server closes a connection after each stream although
    # it says keep-alive; a request sent before the close is seen dies without an answer.
    server.script(fs.text_stream("one", end="finish-reset-next"))
    model = make_model(server.url)
    assert model.chat("hi").text == "one"
    assert model.chat("hi").text == "hi|0;hi|1;hi|2;"
    assert server.connections == 2 and len(server.requests) == 2  # the request on the dead one was never read


def test_llama_servers_close_after_each_stream_is_handled(server, make_model):
    server.default = lambda conn, request: fs.text_stream("x", end="finish-close")(conn, request)
    model = make_model(server.url)
    assert [model.chat("hi").text for _ in range(3)] == ["x", "x", "x"]
    assert server.connections == 3 and len(server.requests) == 3


@pytest.mark.parametrize("fault", [fs.reset_after_request, fs.close_after_request])
def test_a_request_closed_without_any_answer_byte_is_retried(server, make_model, fault):
    # Decision in RetryPolicy (_config.py): no byte of answer means llama-server either never
    # saw the request or dropped it with the connection (it cancels a task whose client left),
    # so sending it again cannot run it twice. See the #5 report.
    server.script(fault())
    assert make_model(server.url).chat("hi").text == "hi|0;hi|1;hi|2;"
    assert len(server.requests) == 2


def test_a_request_never_answered_gives_a_connect_error_naming_the_close(server, make_model):
    server.script(*[fs.close_after_request()] * 9)
    with pytest.raises(lite.ConnectError, match="closed the connection without answering"):
        make_model(server.url, retry=FAST).chat("hi")
    assert len(server.requests) == 1 + DEFAULT_RETRY.connect


@pytest.mark.parametrize("payloads", [(), CHUNKS[:2]], ids=["after the status line", "after two events"])
def test_nothing_is_retried_once_the_answer_has_begun(server, make_model, payloads):
    server.script(fs.sse_stream(*payloads, done=False, end="reset"))
    with pytest.raises(lite.StreamError):
        list(make_model(server.url).stream("hi"))
    assert len(server.requests) == 1


def test_retry_counts_and_none(server, make_model):
    server.script(fs.respond_json(503, LOADING), fs.respond_json(503, LOADING), fs.text_stream("ok"))
    assert make_model(server.url, retry=2).chat("hi").text == "ok" and len(server.requests) == 3
    server.script(fs.respond_json(503, LOADING), fs.text_stream("unused"))
    with pytest.raises(lite.ModelThrottledException, match="Loading model"):
        make_model(server.url, retry=None).chat("hi")
    assert len(server.requests) == 4


def test_the_policy_is_a_value_that_use_never_changes(server, make_model):
    before = (DEFAULT_RETRY.connect, DEFAULT_RETRY.status, DEFAULT_RETRY.history, DEFAULT_RETRY.status_since)
    server.script(fs.respond_json(503, LOADING), fs.reset_after_request())
    model = make_model(server.url, retry=FAST)
    assert model.chat("hi").text == "hi|0;hi|1;hi|2;"
    assert (DEFAULT_RETRY.connect, DEFAULT_RETRY.status, DEFAULT_RETRY.history, DEFAULT_RETRY.status_since) == before
    assert (FAST.connect, FAST.status, FAST.history, FAST.status_since) == (3, 4, (), None)


# -- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("retry", [DEFAULT_RETRY, None], ids=["default retry", "no retry"])
def test_a_silent_server_raises_read_timeout_within_the_read_timeout(server, make_model, retry):
    server.script(fs.silence())
    result, seconds = elapsed(make_model(server.url, timeout=(1, 0.5), retry=retry).chat, "hi")
    assert type(result) is lite.ReadTimeout, result  # was ConnectError with the default retry
    assert 0.45 <= seconds < 1.5 and len(server.requests) == 1  # a read timeout is never retried
    assert server.disconnected.wait(2)  # and the client hung up, so the server can drop the request


def test_silence_mid_stream_raises_read_timeout_after_the_events_so_far(server, make_model):
    server.script(fs.sse_stream(*CHUNKS[:3], done=False, end="stall"))
    events, start = [], time.monotonic()
    with pytest.raises(lite.ReadTimeout):
        for event in make_model(server.url, timeout=(1, 0.5)).stream("hi"):
            events.append((event, time.monotonic()))
    last_event_at = events[-1][1]
    assert events[-1][0] == {"contentBlockDelta": {"delta": {"text": "b"}}}
    assert 0.45 <= time.monotonic() - last_event_at < 1.5 and last_event_at - start < 1.0
    assert server.disconnected.wait(2)


def test_connect_timeout_applies_and_is_retried_as_a_connect_failure(make_model):
    with fs.blackhole() as url:
        policy, log = counting(DEFAULT_RETRY.new(connect=1, backoff_factor=0))
        result, seconds = elapsed(make_model(url, timeout=(0.3, 5), retry=policy).chat, "hi")
    assert type(result) is lite.ConnectTimeout and isinstance(result, lite.ConnectError)
    assert len(log) == 2 and 0.55 <= seconds < 2.0  # two attempts of 0.3 s


def test_a_queued_request_needs_a_read_timeout_longer_than_the_queue(server, make_model):
    # llama-server queues a request without sending a byte while every slot is busy.
    server.script(fs.delayed(0.6, fs.text_stream("late")), fs.delayed(0.6, fs.text_stream("late")))
    assert make_model(server.url, timeout=(1, 1.0)).chat("hi").text == "late"
    with pytest.raises(lite.ReadTimeout):
        make_model(server.url, timeout=(1, 0.3)).chat("hi")
    assert server.disconnected.wait(2)  # the client left: llama-server drops the queued task


def test_the_read_timeout_is_a_gap_not_a_deadline(server, make_model):
    server.script(fs.text_stream(*"abcdefgh", gap=0.1))  # 1.2 s in all, 0.1 s between events
    result, seconds = elapsed(make_model(server.url, timeout=(1, 0.4)).chat, "hi")
    assert result.text == "abcdefgh" and seconds > 0.4


def test_a_stream_without_chunked_framing_is_still_read_as_it_arrives(server, make_model):
    server.script(fs.sse_unframed(*CHUNKS, gap=0.2))  # 5 events + [DONE], 0.2 s apart, then close
    start, arrivals = time.monotonic(), {}
    for event in make_model(server.url).stream("hi"):
        arrivals.setdefault(next(iter(event)), time.monotonic() - start)
    assert arrivals["messageStop"] >= 1.0
    assert arrivals["contentBlockDelta"] < arrivals["messageStop"] - 0.5  # was: everything at the very end


@pytest.mark.parametrize("framing", ["chunked", "unframed"])
def test_a_gzip_compressed_stream_from_a_proxy_is_decoded(server, make_model, framing):
    compressed = gzip.compress(b"".join(map(fs.sse_event, CHUNKS)) + b"data: [DONE]\n\n")

    def handler(conn, request):
        framing_header = ("Transfer-Encoding", "chunked") if framing == "chunked" else ("Connection", "close")
        conn.send_head(200, [("Content-Type", "text/event-stream"), ("Content-Encoding", "gzip"), framing_header])
        if framing == "chunked":
            conn.send_chunk(compressed[:25]) and conn.send_chunk(compressed[25:]) and conn.end_chunks()
        else:
            conn.send(compressed)
            conn.close()

    server.script(handler)
    assert make_model(server.url).chat("hi").text == "ab"


@pytest.mark.parametrize("end,expected", [("stall", lite.ReadTimeout), ("close", lite.StreamError)])
def test_a_stream_without_chunked_framing_times_out_or_breaks_like_the_others(server, make_model, end, expected):
    server.script(fs.sse_unframed(*CHUNKS[:3], done=False, end=end))
    with pytest.raises(expected):
        list(make_model(server.url, timeout=(1, 0.4)).stream("hi"))


# -- broken and hostile streams: always an exception, never a quiet end ------------------------

BROKEN_STREAMS = {
    "connection cut mid-stream": (fs.sse_stream(*CHUNKS[:3], done=False, end="cut"), "broke off"),
    "connection reset mid-stream": (fs.sse_stream(*CHUNKS[:3], done=False, end="reset"), "broke off"),
    "no [DONE]": (fs.sse_stream(*CHUNKS, done=False), r"before \[DONE\]"),
    "no finish reason": (fs.sse_stream(*CHUNKS[:3]), "without a finish reason"),
    "error object in a 200 stream": (
        fs.sse_stream(*CHUNKS[:2], {"error": {"code": 500, "message": "slot 0 crashed", "type": "server_error"}},
                      done=False), "slot 0 crashed"),
    "data line not JSON": (fs.sse_stream(*CHUNKS[:2], "{not json"), "not JSON"),
    "choices not a list": (fs.sse_stream({"choices": {"index": 0}}, *CHUNKS[1:]), "malformed"),
    "delta null": (fs.sse_stream({"choices": [{"index": 0, "delta": None, "finish_reason": None}]}, *CHUNKS[1:]),
                   "malformed"),
    "no choices": (fs.sse_stream({"object": "chat.completion.chunk"}, *CHUNKS), "malformed"),
    "tool call without a name": (fs.sse_stream({"choices": [{"index": 0, "finish_reason": None, "delta": {
        "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}, *CHUNKS[3:]), "no function name"),
    "non-UTF-8 bytes": (fs.sse_stream(raw=b'data: {"choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n'), "UTF-8"),
    "HTML page with 200": (fs.respond(200, HTML, content_type="text/html"), "expected an event stream"),
    "HTML page labelled an event stream": (fs.sse_stream(raw=HTML.encode()), r"before \[DONE\]"),
    "endless HTML page with 200": (fs.endless(200), "expected an event stream"),
    "JSON instead of a stream": (fs.respond_json(200, {"choices": [{"message": {"content": "x"}}]}),
                                 "expected an event stream"),
}


@pytest.mark.parametrize("name", BROKEN_STREAMS)
def test_broken_streams_raise_stream_error_with_context(server, make_model, name):
    handler, match = BROKEN_STREAMS[name]
    server.script(handler)
    events = []
    start = time.monotonic()
    with pytest.raises(lite.StreamError, match=match) as info:
        for event in make_model(server.url).stream("hi"):
            events.append(event)
    assert time.monotonic() - start < 3  # an endless body (10 s) is not read to its end
    assert not any("messageStop" in event for event in events)  # never looks finished
    assert len(server.requests) == 1
    assert len(str(info.value)) < 1000  # payloads are truncated
    assert info.value.status_code in (200, None)
    if info.value.payload is not None and len(info.value.payload) > 300:
        assert f"({len(info.value.payload)} chars)" in str(info.value)


@pytest.mark.parametrize("handler", [fs.respond(502, HTML, content_type="text/html"), fs.endless(502)],
                         ids=["proxy page", "endless proxy page"])
def test_a_502_page_from_a_proxy_is_a_server_error_with_the_page(server, make_model, handler):
    server.script(handler)
    result, seconds = elapsed(list, make_model(server.url).stream("hi"))
    assert isinstance(result, lite.ServerError) and result.status_code == 502 and result.body is None
    assert "502 Bad Gateway" in result.message or "proxy error page" in result.message
    assert len(str(result)) < 1000 and seconds < 3 and len(server.requests) == 1


@pytest.mark.parametrize("name", ["connection cut mid-stream", "connection reset mid-stream", "non-UTF-8 bytes"])
def test_transport_stream_errors_carry_the_status_and_the_bytes(server, make_model, name):
    server.script(BROKEN_STREAMS[name][0])
    with pytest.raises(lite.StreamError) as info:
        list(make_model(server.url).stream("hi"))
    assert info.value.status_code == 200
    if name == "non-UTF-8 bytes":
        assert "\\xff\\xfe" in info.value.payload and "content" in info.value.payload


def test_an_endless_error_body_on_a_json_endpoint_is_not_read_to_its_end(server, make_model):
    server.script(fs.endless(502))
    result, seconds = elapsed(make_model(server.url).health)
    assert isinstance(result, lite.ServerError) and result.status_code == 502 and seconds < 3


def test_a_long_offending_payload_is_truncated(server, make_model):
    server.script(fs.sse_stream(*CHUNKS[:2], "x" * 10_000))
    with pytest.raises(lite.StreamError, match=r"\(10000 chars\)") as info:
        list(make_model(server.url).stream("hi"))
    assert info.value.payload == "x" * 10_000 and len(str(info.value)) < 500


def test_a_missing_ca_bundle_is_a_library_error(tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(lite.ConnectError, match="CA certificate bundle"):  # requests raises a bare OSError
        LlamaCppModel("https://127.0.0.1:9", verify=str(tmp_path / "missing.pem"), retry=None).chat("hi")


# -- the async shim: same faults, same exceptions; cancellation closes the connection ----------


async def collect(agen):
    return [event async for event in agen]


@pytest.mark.parametrize("name", ["connection cut mid-stream", "error object in a 200 stream", "data line not JSON",
                                  "non-UTF-8 bytes", "HTML page with 200"])
def test_async_shim_raises_the_same_stream_errors(server, name):
    handler, match = BROKEN_STREAMS[name]
    server.script(handler)
    model = AsyncLlamaCppModel(server.url, timeout=(2, 2))
    with pytest.raises(lite.StreamError, match=match):
        asyncio.run(asyncio.wait_for(collect(model.stream("hi")), 5))
    model.close()


@pytest.mark.parametrize("handlers,kwargs,expected", [
    ([fs.silence()], {"timeout": (1, 0.4)}, lite.ReadTimeout),
    ([fs.respond_json(503, LOADING)] * 9, {"retry": FAST}, lite.ModelThrottledException),
    ([fs.respond_json(401, {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}})],
     {}, lite.AuthenticationError),
], ids=["read timeout", "503 retries spent", "401"])
def test_async_shim_raises_the_same_transport_errors(server, handlers, kwargs, expected):
    server.script(*handlers)
    model = AsyncLlamaCppModel(server.url, **{"timeout": (2, 2), **kwargs})
    with pytest.raises(expected):
        asyncio.run(asyncio.wait_for(collect(model.stream("hi")), 5))
    model.close()


def _stream_then_stall(server):
    server.script(fs.sse_stream(*CHUNKS[:3], done=False, end="stall"))


def test_cancelling_the_awaiting_task_mid_stream_closes_the_connection(server):
    _stream_then_stall(server)
    model = AsyncLlamaCppModel(server.url, timeout=(2, 5))  # the read timeout is not what ends it
    threads_before = threading.active_count()
    got = []

    async def consume():
        async for event in model.stream("hi"):
            got.append(event)

    async def main():
        task = asyncio.create_task(consume())
        for _ in range(200):
            if any("contentBlockDelta" in event for event in got):
                break
            await asyncio.sleep(0.01)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cancelled_at

    cancelled_at = asyncio.run(asyncio.wait_for(main(), 5))
    assert server.disconnected.wait(2) and time.monotonic() - cancelled_at < 1.5
    assert server.wait_until(lambda: threading.active_count() <= threads_before, 2)  # the worker ended
    model.close()


def test_leaving_an_async_for_early_closes_the_connection(server):
    _stream_then_stall(server)
    model = AsyncLlamaCppModel(server.url, timeout=(2, 5))

    async def main():
        agen = model.stream("hi")
        async for event in agen:
            if "contentBlockDelta" in event:
                break
        await agen.aclose()

    asyncio.run(asyncio.wait_for(main(), 5))
    assert server.disconnected.wait(2)
    model.close()


def test_sync_close_and_abort_mid_stream_close_the_connection(server, make_model):
    _stream_then_stall(server)
    events = make_model(server.url, timeout=(2, 5)).stream("hi")
    assert next(events) == {"messageStart": {"role": "assistant"}}  # yielded before the request is sent
    assert not server.requests
    while "contentBlockDelta" not in next(events):
        pass
    events.close()
    assert server.disconnected.wait(2)

    server.disconnected.clear()
    _stream_then_stall(server)
    events = make_model(server.url, timeout=(2, 5)).stream("hi")
    while "contentBlockDelta" not in next(events):
        pass
    threading.Timer(0.2, events.abort).start()  # from another thread, while a read is blocked
    result, seconds = elapsed(list, events)
    assert isinstance(result, lite.LlamaCppError) and seconds < 1.5
    assert server.disconnected.wait(2)


# -- secrets -----------------------------------------------------------------------------------

AUTH_401 = {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}
SECRET_PATHS = {
    "401": ([fs.respond_json(401, AUTH_401)], {}),
    "500": ([fs.respond_json(500, {"error": {"code": 500, "message": "boom", "type": "server_error"}})], {}),
    "503 retries spent": ([fs.respond_json(503, LOADING)] * 9, {"retry": FAST}),
    "closed without an answer": ([fs.close_after_request()] * 9, {"retry": FAST}),
    "read timeout": ([fs.silence()], {"timeout": (1, 0.3)}),
    "cut mid-stream": ([BROKEN_STREAMS["connection cut mid-stream"][0]], {}),
    "not JSON": ([BROKEN_STREAMS["data line not JSON"][0]], {}),
    "HTML page": ([BROKEN_STREAMS["HTML page with 200"][0]], {}),
    "error in stream": ([BROKEN_STREAMS["error object in a 200 stream"][0]], {}),
    "redirect loop": ([fs.redirect("/v1/chat/completions")] * 40, {}),
}


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


@pytest.mark.parametrize("name", SECRET_PATHS)
def test_the_api_key_never_leaks(server, make_model, caplog, monkeypatch, name):
    handlers, kwargs = SECRET_PATHS[name]
    for logger in (None, "urllib3", "requests", "llamacpp_lite"):
        caplog.set_level(logging.DEBUG, logger=logger)
    server.script(*handlers)
    if name == "401":
        monkeypatch.setenv("LLAMACPP_API_KEY", CANARY)
        model = make_model(server.url, **kwargs)
    else:
        model = make_model(server.url, api_key=CANARY, **kwargs)
    with pytest.raises(lite.LlamaCppError) as info:
        list(model.stream("hi"))
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"  # it was sent
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    shown = [repr(model), str(model), str(model.get_config()), str(model.config), repr(AsyncLlamaCppModel.wrap(model)),
             *(f"{e!s} {e!r} {getattr(e, 'payload', '')} {getattr(e, 'body', '')}" for e in _chain(info.value)),
             "".join(traceback.format_exception(info.value)),
             *(formatter.format(record) for record in caplog.records)]
    assert caplog.records  # the DEBUG logs were captured
    assert not [text for text in shown if CANARY in text]


def test_a_redirect_to_another_host_carries_neither_the_key_nor_custom_headers(make_model):
    with fs.FaultServer() as origin, fs.FaultServer() as other, fs.FaultServer() as other_port:
        other.script(fs.text_stream("moved"))
        other_port.script(fs.text_stream("moved too"))
        origin.script(fs.redirect(f"http://localhost:{other.port}/v1/chat/completions"),
                      fs.redirect(f"http://127.0.0.1:{other_port.port}/v1/chat/completions"))
        model = make_model(origin.url, api_key=CANARY, headers={"X-Tenant": "private-tenant", "X-Api-Key": CANARY})
        assert model.chat("hi").text == "moved"  # 307 keeps the POST and its body
        assert model.chat("hi").text == "moved too"
        assert all(r.headers["authorization"] == f"Bearer {CANARY}" for r in origin.requests)
        moved = other.requests + other_port.requests
        assert [r.json()["messages"] for r in moved] == [[{"role": "user", "content": "hi"}]] * 2
        assert not [r for r in moved if {"authorization", "x-tenant", "x-api-key"} & set(r.headers)]
        assert all(r.headers["x-tenant"] == "private-tenant" for r in origin.requests)


def test_a_redirect_on_the_same_server_keeps_the_headers(server, make_model):
    server.script(fs.redirect("/v2/chat"), fs.text_stream("here"))
    model = make_model(server.url, api_key=CANARY, headers={"X-Tenant": "t1"})
    assert model.chat("hi").text == "here"
    assert [(r.path, r.headers["x-tenant"], r.headers["authorization"]) for r in server.requests] == [
        ("/v1/chat/completions", "t1", f"Bearer {CANARY}"), ("/v2/chat", "t1", f"Bearer {CANARY}")]


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return str(cert), str(key)


@pytest.fixture
def tls_server(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server = fs.FaultServer(ssl_context=context)
    yield server
    server.stop()


def test_tls_is_verified_by_default_even_with_empty_ca_variables(tls_server, make_model, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    with pytest.raises(lite.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        make_model(tls_server.url).chat("hi")
    assert tls_server.connections == 1 and not tls_server.requests  # refused once, not retried


def test_a_custom_ca_bundle_works_and_wins_over_the_environment(tls_server, tls_files, make_model, monkeypatch):
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # a bundle without our CA
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    model = make_model(tls_server.url, verify=tls_files[0])
    assert model.chat("hi").text == "hi|0;hi|1;hi|2;"
    with pytest.raises(lite.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        make_model(tls_server.url).chat("hi")  # the default still verifies, against the environment's bundle


def test_the_environment_bundle_is_used_by_default(tls_server, tls_files, make_model, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files[0])
    assert make_model(tls_server.url).chat("hi").text == "hi|0;hi|1;hi|2;"


def test_verification_off_only_when_asked_and_despite_the_environment(tls_server, tls_files, make_model, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files[0] + ".missing")  # would fail if it were used
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        assert make_model(tls_server.url, verify=False).chat("hi").text == "hi|0;hi|1;hi|2;"


# -- load ----------------------------------------------------------------------------------------


def test_sixteen_threads_share_one_model_without_cross_talk(server):
    n, pool = 16, 4
    server.default = fs.echo_stream(pieces=6, gap=0.002, barrier=threading.Barrier(n))  # all 16 at once
    model = LlamaCppModel(server.url, timeout=(2, 5), pool_maxsize=pool)
    threads_before = threading.active_count()
    results: dict = {}

    def worker(i):
        results[i] = model.chat(f"marker-{i}").text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {i: "".join(f"marker-{i}|{k};" for k in range(6)) for i in range(n)}
    assert server.connections == n and len(server.requests) == n
    assert server.wait_until(lambda: server.open_connections == pool)  # the pool keeps pool_maxsize
    model.close()
    assert server.wait_until(lambda: server.open_connections == 0)
    assert threading.active_count() == threads_before


def test_sequential_streams_reuse_one_pooled_connection(server):
    with LlamaCppModel(server.url, timeout=(2, 2)) as model:
        assert [model.chat(f"m{i}").text for i in range(5)] == [f"m{i}|0;m{i}|1;m{i}|2;" for i in range(5)]
        assert server.connections == 1 and len(server.requests) == 5
    assert server.wait_until(lambda: server.open_connections == 0)


def test_sixteen_async_streams_share_one_model(server):
    n = 16
    server.default = fs.echo_stream(pieces=4, gap=0.002, barrier=threading.Barrier(n))
    model = AsyncLlamaCppModel(server.url, timeout=(2, 5))
    threads_before = threading.active_count()

    async def one(i):
        events = await collect(model.stream(f"async-{i}"))
        return "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)

    async def main():
        return await asyncio.gather(*(one(i) for i in range(n)))

    texts = asyncio.run(asyncio.wait_for(main(), 10))
    assert texts == ["".join(f"async-{i}|{k};" for k in range(4)) for i in range(n)]
    model.close()
    assert server.wait_until(lambda: server.open_connections == 0)
    assert server.wait_until(lambda: threading.active_count() <= threads_before, 2)


# -- the environment --------------------------------------------------------------------------------


def test_proxy_variables_are_read_when_the_model_is_built(server, make_model, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the fault server plays the proxy
    monkeypatch.setenv("NO_PROXY", "direct.test")
    server.default = fs.text_stream("via proxy")
    model = make_model("http://upstream.test:8080")
    monkeypatch.delenv("HTTP_PROXY")  # read once, when the model was built
    assert model.chat("hi").text == "via proxy"
    assert server.requests[0].path == "http://upstream.test:8080/v1/chat/completions"  # absolute: a proxy request
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that is not there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert make_model(server.url).chat("hi").text == "via proxy"  # NO_PROXY: straight to the server
