"""The async shim with real sockets: a real llama-server, and the paced fake server of the benchmark."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest

from benchmarks.fake_server import FakeLlamaServer
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel

pytestmark = pytest.mark.real_server


async def collect(agen):
    return [event async for event in agen]


def without_metrics(events):
    return [e if "metadata" not in e else {"usage": e["metadata"]["usage"]} for e in events]


def test_events_identical_to_sync_at_temperature_0(real_server):
    model = LlamaCppModel(real_server.base_url)
    kwargs = {"max_tokens": 24, "temperature": 0, "ignore_eos": True, "cache_prompt": False}  # same usage too
    sync_events = list(model.stream("Say something.", **kwargs))
    async_events = asyncio.run(collect(AsyncLlamaCppModel.wrap(model).stream("Say something.", **kwargs)))
    assert without_metrics(async_events) == without_metrics(sync_events)
    assert sum("contentBlockDelta" in e for e in async_events) >= 1


@pytest.fixture
def paced_server_url() -> Iterator[str]:
    """The benchmark's fake llama-server in a process of its own (so it takes no GIL from the client)."""
    code = ("import sys; from benchmarks.fake_server import FakeLlamaServer\n"
            "with FakeLlamaServer() as server:\n    print(server.url, flush=True); sys.stdin.read()")
    repo = pathlib.Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               cwd=repo)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()  # the server stops at end of input ...
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # ... or is killed by PID
            process.kill()
            process.wait()
        process.stdout.close()


def test_64_concurrent_streams_progress_at_once(paced_server_url):
    tokens, tps = 40, 40  # one stream takes about 1 s

    async def one(model):
        events = await collect(model.stream("hi", max_tokens=tokens))
        return sum("contentBlockDelta" in e for e in events)

    async def timed(count, model):
        started = time.perf_counter()
        counts = await asyncio.gather(*(one(model) for _ in range(count)))
        assert counts == [tokens] * count
        return time.perf_counter() - started

    model = AsyncLlamaCppModel(f"{paced_server_url}/tps={tps}")
    asyncio.run(timed(64, model))  # warm-up: opens the connections
    single = asyncio.run(timed(1, model))
    many = asyncio.run(timed(64, model))
    model.close()
    # With the loop's default executor (6 threads here) 64 streams would take ~11x one stream.
    assert many < 2 * single, (single, many)


def test_cancelling_frees_the_real_servers_only_slot(one_slot_server):
    model = AsyncLlamaCppModel(one_slot_server.base_url, timeout=(5, 30))

    async def abandon_by_break():
        async for event in model.stream("go", max_tokens=5000, ignore_eos=True):
            if "contentBlockDelta" in event:
                break

    async def abandon_by_cancel():
        task = asyncio.create_task(collect(model.stream("go", max_tokens=5000, ignore_eos=True)))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def abandon_by_aclose():
        agen = model.stream("go", max_tokens=5000, ignore_eos=True)
        await agen.__anext__()
        await agen.__anext__()
        await agen.aclose()

    for abandon in (abandon_by_break, abandon_by_cancel, abandon_by_aclose):
        asyncio.run(abandon())
        started = time.monotonic()
        events = asyncio.run(collect(model.stream("hi", max_tokens=4, ignore_eos=True)))
        assert time.monotonic() - started < 5, abandon.__name__  # 5000 tokens would take several seconds
        assert events[-1]["metadata"]["usage"]["outputTokens"] == 4


def test_no_thread_or_connection_leak_after_100_abandoned_streams():
    with FakeLlamaServer() as server:
        model = AsyncLlamaCppModel(f"{server.url}/tps=200")
        baseline = threading.active_count()

        async def abandon_many():
            for _ in range(100):
                agen = model.stream("hi", max_tokens=1000)
                await agen.__anext__()
                await agen.__anext__()
                await agen.aclose()

        asyncio.run(abandon_many())
        deadline = time.monotonic() + 5
        while threading.active_count() > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= baseline
        model.close()
