"""Cancellation never sends a request again, returns at once, and frees the server's work.

Against the fault-injecting server (what the client does) and a real llama-server with one slot
(what the server then does with a request that was still queued).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel
from tests import fault_server as fs
from tests.helpers import elapsed

LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}


class abort_later:
    """Call `events.abort()` from another thread after `seconds`; `took()` is how long abort() took."""

    def __init__(self, events, seconds: float) -> None:
        self._seconds: list = []
        self._thread = threading.Thread(target=self._run, args=(events, seconds), daemon=True)
        self._thread.start()

    def _run(self, events, seconds: float) -> None:
        time.sleep(seconds)
        start = time.monotonic()
        events.abort()
        self._seconds.append(time.monotonic() - start)

    def took(self) -> float:
        self._thread.join(5)
        return self._seconds[0]


def test_abort_while_the_server_is_silent_raises_aborted_and_never_resends(server, make_model):
    server.default = fs.silence()
    events = make_model(server.url, timeout=(2, 30)).stream("hi")  # the default retry policy
    took = abort_later(events, 0.3)
    result, seconds = elapsed(list, events)
    assert isinstance(result, lite.Aborted) and seconds < 1.0
    assert took.took() < 0.05  # abort() itself returns at once
    assert server.disconnected.wait(2)
    time.sleep(0.3)
    assert len(server.requests) == 1  # urllib3 saw a closed connection, and did not send it again


def test_abort_during_a_retry_back_off_ends_it_at_once(server, make_model):
    server.default = fs.respond_json(503, LOADING, headers=[("Retry-After", "5")])
    events = make_model(server.url, timeout=(2, 30)).stream("hi")
    abort_later(events, 0.3)
    result, seconds = elapsed(list, events)
    assert isinstance(result, lite.Aborted) and seconds < 1.0
    time.sleep(0.3)
    assert len(server.requests) == 1


def test_a_stream_aborted_before_it_started_is_never_sent(server, make_model):
    events = make_model(server.url).stream("hi")
    assert next(events) == {"messageStart": {"role": "assistant"}}
    events.abort()
    with pytest.raises(lite.Aborted):
        list(events)
    assert server.requests == []


def test_with_block_closes_the_stream_however_it_ends(server, make_model):
    server.default = fs.sse_stream(*fs.text_chunks("a", "b"), end="stall")
    model = make_model(server.url)
    with pytest.raises(RuntimeError, match="stop"):
        with model.stream("hi") as events:
            next(events)
            next(events)
            raise RuntimeError("stop here")
    assert server.disconnected.wait(2)


@pytest.mark.parametrize("call", ["stream", "health", "chat"])
def test_cancelling_an_async_call_queued_on_a_busy_server_closes_its_socket_at_once(server, call):
    server.default = fs.delayed(8, fs.text_stream("late"))  # queued: no byte of answer for 8 s
    model = AsyncLlamaCppModel(server.url, timeout=(2, 30))

    async def consume():
        if call == "stream":
            return [event async for event in model.stream("hi")]
        return await getattr(model, call)() if call == "health" else await model.chat("hi")

    async def main():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cancelled

    cancelled = asyncio.run(main())
    assert server.disconnected.wait(2) and time.monotonic() - cancelled < 1.0
    time.sleep(0.3)
    assert len(server.requests) == 1
    model.close()


@pytest.mark.real_server
def test_aborting_a_request_queued_on_a_real_server(one_slot_server):
    """One slot busy; a second request waits in the queue and is aborted: at once, and harmless.

    The client closes the socket at once (see the fault-server test above). llama-server itself
    looks at a waiting request's connection only after a second in which no result arrived for
    any task (HTTP_POLLING_SECONDS, `server_response::recv_with_timeout`), so while another
    request is generating, the closed request still runs (and is cancelled) when its turn comes.
    """
    with LlamaCppModel(one_slot_server.base_url, timeout=(5, 60)) as model:
        busy = model.stream("hold the slot", max_tokens=3000, ignore_eos=True)
        next(busy), next(busy)
        queued = model.stream("queued " * 150, max_tokens=4)
        took = abort_later(queued, 0.2)
        result, seconds = elapsed(list, queued)
        assert isinstance(result, lite.Aborted) and seconds < 0.6 and took.took() < 0.05
        rest = list(busy)
        assert rest[-1]["metadata"]["usage"]["outputTokens"] == 3000  # the busy answer was not disturbed
        assert model.chat("still fine", max_tokens=2).stop_reason in ("max_tokens", "end_turn")
