"""The async shim against mocked HTTP: same events as sync, errors unchanged, nothing bound to a loop."""

from __future__ import annotations

import asyncio
import threading
import traceback

import pytest

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel
from llamacpp_lite._async import aiter_in_thread, run_in_thread
from tests.helpers import MOCK_URL, add_stream, text_chunks


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
