"""The async shim against mocked HTTP: same events as sync, errors unchanged, nothing bound to a loop."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback

import pytest

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel
from llamacpp_lite import _async
from llamacpp_lite._async import aiter_in_thread, run_in_thread
from tests.helpers import MOCK_URL, add_stream, elapsed, text_chunks


async def collect(agen):
    return [event async for event in agen]


def test_same_events_as_sync(mock_api):
    add_stream(mock_api, *text_chunks("a", "b", "c"))
    add_stream(mock_api, *text_chunks("a", "b", "c"))
    sync = LlamaCppModel(MOCK_URL, retry=None)
    expected = list(sync.stream("hi"))
    got = asyncio.run(collect(AsyncLlamaCppModel.wrap(sync).stream("hi", invocation_state={}, model_state={})))
    strip = lambda events: [e for e in events if "metadata" not in e]  # noqa: E731 (timings differ)
    assert strip(got) == strip(expected) and got[-1]["metadata"]["usage"] == expected[-1]["metadata"]["usage"]


def test_worker_exceptions_surface_unchanged_with_their_traceback(mock_api):
    mock_api.add("POST", MOCK_URL + "/v1/chat/completions", status=400,
                 json={"error": {"code": 400, "type": "invalid_request_error", "message": "bad field"}})
    model = AsyncLlamaCppModel(MOCK_URL, retry=None)
    with pytest.raises(lite.BadRequestError, match="bad field") as info:
        asyncio.run(collect(model.stream("hi")))
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "error_from_response" not in frames  # raised, not constructed, there
    assert "_check_status" in frames  # the worker's frames are kept


def test_a_new_event_loop_per_call_works(mock_api):
    model = AsyncLlamaCppModel(MOCK_URL, retry=None)
    for _ in range(3):
        add_stream(mock_api, *text_chunks("x"))
        assert asyncio.run(collect(model.stream("hi")))[2] == {"contentBlockDelta": {"delta": {"text": "x"}}}


def test_structured_output_and_count_tokens(mock_api):
    add_stream(mock_api, *text_chunks('{"ok":', " true}"))
    mock_api.add("POST", MOCK_URL + "/apply-template", json={"prompt": "p"})
    mock_api.add("POST", MOCK_URL + "/tokenize", json={"tokens": [1, 2]})
    model = AsyncLlamaCppModel(MOCK_URL, retry=None)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    events = asyncio.run(collect(model.structured_output(schema, "ok?")))
    assert events[-1] == {"output": {"ok": True}}
    assert asyncio.run(model.count_tokens("hi")) == 2


def test_config_surface():
    model = AsyncLlamaCppModel(MOCK_URL, params={"top_k": 2}, context_window_limit=1000)
    assert model.config["model_id"] == "default" and model.stateful is False
    assert model.context_window_limit == 1000
    model.update_config(params={"top_k": 3})
    assert model.get_config()["params"] == {"top_k": 3}
    with pytest.raises(TypeError):
        AsyncLlamaCppModel(MOCK_URL, model=LlamaCppModel(MOCK_URL))


class Closable:
    """An iterator that records close() and can block like a network read."""

    def __init__(self, n):
        self.n, self.i = n, 0
        self.closed = threading.Event()
        self.aborted = threading.Event()

    def __iter__(self):
        return self

    def __next__(self):
        if self.aborted.is_set() or self.i >= self.n:
            raise StopIteration
        self.i += 1
        if self.i > 3:
            self.aborted.wait(5)  # "blocked on the socket" until abort()
        return self.i

    def close(self):
        self.closed.set()

    def abort(self):
        self.aborted.set()


def test_leaving_early_aborts_and_closes_in_the_worker():
    source = Closable(1000)

    async def main():
        async for item in aiter_in_thread(source):
            if item == 3:
                break

    asyncio.run(main())
    assert source.aborted.is_set() and source.closed.wait(2)


def test_cancelling_the_task_aborts():
    source = Closable(1000)

    async def consume():
        async for _ in aiter_in_thread(source):
            pass

    async def main():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert source.aborted.is_set() and source.closed.wait(2)


def test_a_slow_consumer_holds_the_worker_back():
    produced = []

    def numbers():
        for i in range(5000):
            produced.append(i)
            yield i

    async def main():
        seen = 0
        async for _ in aiter_in_thread(numbers()):
            seen += 1
            if seen == 10:
                await asyncio.sleep(0.2)
                return len(produced)

    assert asyncio.run(main()) < 1200  # bounded buffer, not all 5000


def test_run_in_thread_returns_and_raises():
    assert asyncio.run(run_in_thread(lambda x: x + 1, 1)) == 2
    with pytest.raises(ZeroDivisionError):
        asyncio.run(run_in_thread(lambda: 1 / 0))


def test_many_streams_at_once_each_get_their_items_in_order():
    # One doorbell per loop serves every stream; with many streams delivering, the loop polls.
    def paced(tag, n):
        for i in range(n):
            time.sleep(0.001 * (i % 3))
            yield (tag, i)

    async def one(tag):
        return [item async for item in aiter_in_thread(paced(tag, 60))]

    async def main():
        return await asyncio.gather(*(one(tag) for tag in range(48)))

    results, seconds = elapsed(asyncio.run, main())
    assert results == [[(tag, i) for i in range(60)] for tag in range(48)]
    assert seconds < 5  # (about 0.1 s of pacing: a hang detector, not a speed test)


def test_items_that_pour_in_then_stop_are_all_delivered_promptly():
    # After a burst the loop polls; the item after a pause must still arrive (no lost wake-up).
    def bursts():
        for burst in range(5):
            yield from range(burst * 100, burst * 100 + 100)
            time.sleep(0.03)

    async def main():
        start = time.monotonic()
        items = [item async for item in aiter_in_thread(bursts())]
        return items, time.monotonic() - start

    items, seconds = asyncio.run(main())
    assert items == list(range(500)) and seconds < 2


def test_a_loop_closed_under_a_running_stream_releases_its_worker(monkeypatch):
    monkeypatch.setattr(_async, "_FULL_WAIT_S", 0.05)
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            closed.set()

    loop = asyncio.new_event_loop()
    stream = aiter_in_thread(endless())
    assert loop.run_until_complete(stream.__anext__()) == 1
    loop.close()  # no aclose(), no shutdown_asyncgens(): the worker fills its buffer and waits
    assert closed.wait(3)  # it saw the loop closed, stopped and closed its iterator


def count_wake_ups(monkeypatch, make_streams):
    """Run the streams; return (handover rings, loop wake-ups from workers)."""
    rings = wake_ups = 0
    ring = _async._Doorbell.ring

    def counted_ring(self, handover):
        nonlocal rings
        rings += 1
        return ring(self, handover)

    monkeypatch.setattr(_async._Doorbell, "ring", counted_ring)

    async def main():
        loop = asyncio.get_running_loop()
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(*args):
            nonlocal wake_ups
            wake_ups += 1
            return call_soon_threadsafe(*args)

        loop.call_soon_threadsafe = counted
        return await asyncio.gather(*(collect(aiter_in_thread(stream)) for stream in make_streams()))

    asyncio.run(main())
    return rings, wake_ups


def test_a_fast_stream_rings_the_loop_about_once(monkeypatch):
    # While items pour in, the loop polls the handover: without that, every drained buffer
    # (at most 512 items) would cost a ring, 40 for these 20,000 items.
    rings, _ = count_wake_ups(monkeypatch, lambda: [iter(range(20_000))])
    assert rings < 20


def test_many_streams_at_once_wake_the_loop_rarely(monkeypatch):
    # With several streams waiting at one wake-up, the loop polls the doorbell instead of being woken.
    def paced():
        for i in range(50):
            time.sleep(0.002)
            yield i

    rings, wake_ups = count_wake_ups(monkeypatch, lambda: [paced() for _ in range(32)])
    assert rings > 500 and wake_ups < rings / 10
