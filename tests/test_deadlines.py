"""`deadline=`: a bound on a whole call, from sending its request to its last event; and the default
timeout. Fault injection for the shapes (a stream that never ends, a queued request, a blackholed
port), then real llama-servers: a queued request on `-np 1`, a generation cut by its deadline, and
a model that is still loading (a single server, and a router swapping models).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import os
import re
import socket
import subprocess
import time

import pytest
import requests

import llamacpp_lite as lite
from llamacpp_lite import DEFAULT_RETRY, AsyncLlamaCppModel, LlamaCppModel
from llamacpp_lite.server import stop_process
from tests import fault_server as fs
from tests.helpers import elapsed
from tests.nginx import free_port

EVENTS = fs.text_chunks(*"abcdefghijklmnopqrstuvwxyz")


# -- fault injection -------------------------------------------------------------------------------


def test_the_default_timeout_bounds_connecting_only():
    assert lite.DEFAULT_TIMEOUT == (10.0, None)
    model = LlamaCppModel("http://127.0.0.1:9")
    assert model._timeout == (10.0, None)
    assert LlamaCppModel("http://127.0.0.1:9", timeout=None)._timeout is None  # still possible


def test_a_stream_that_goes_on_too_long_is_closed_at_its_deadline(server):
    server.script(fs.sse_stream(*EVENTS, gap=0.1))  # 3 s in all
    events = []
    with LlamaCppModel(server.url, retry=None) as model:
        result, seconds = elapsed(lambda: [events.append(e) for e in model.stream("hi", deadline=0.7)])
    assert type(result) is lite.DeadlineExceeded and isinstance(result, lite.TimeoutException)
    assert "deadline of 0.7 s" in str(result) and 0.65 <= seconds < 1.3
    assert 3 <= len([e for e in events if "contentBlockDelta" in e]) <= 9  # what came before was delivered
    assert server.disconnected.wait(2)  # the connection was closed: llama-server cancels the generation


def test_a_request_queued_without_an_answer_is_dropped_at_its_deadline(server):
    server.script(fs.silence())  # a busy llama-server sends nothing while the request waits for a slot
    with LlamaCppModel(server.url, deadline=0.5) as model:  # no read timeout by default
        result, seconds = elapsed(model.chat, "hi")
    assert type(result) is lite.DeadlineExceeded and 0.45 <= seconds < 1.2
    assert server.disconnected.wait(2) and len(server.requests) == 1  # never sent again


def test_the_clock_starts_when_the_request_is_sent(server):
    server.script(fs.text_stream("ok"))
    with LlamaCppModel(server.url) as model:
        events = model.stream("hi", deadline=0.3)
        time.sleep(0.5)  # built, not yet iterated: not yet counting
        assert {"contentBlockDelta": {"delta": {"text": "ok"}}} in list(events)


def test_per_call_deadline_wins_over_the_models(server):
    server.script(fs.delayed(0.6, fs.text_stream("late")), fs.delayed(0.6, fs.text_stream("late")))
    with LlamaCppModel(server.url, deadline=0.3) as model:
        assert model.chat("hi", deadline=2.0).text == "late"
        result, seconds = elapsed(model.chat, "hi")
    assert type(result) is lite.DeadlineExceeded and seconds < 0.55


def test_the_models_deadline_bounds_the_other_endpoints_too(server):
    server.script(fs.silence(), fs.silence())
    with LlamaCppModel(server.url, deadline=0.4) as model:
        for call in (model.health, model.props):
            result, seconds = elapsed(call)
            assert type(result) is lite.DeadlineExceeded and 0.35 <= seconds < 1.0


def test_count_tokens_has_one_deadline_for_both_requests_and_never_estimates_past_it(server):
    server.script(fs.delayed(0.3, fs.respond_json(200, {"prompt": "<|user|>hi"})), fs.silence())
    with LlamaCppModel(server.url) as model:
        result, seconds = elapsed(model.count_tokens, "hi", deadline=0.6)
    assert type(result) is lite.DeadlineExceeded and 0.55 <= seconds < 1.1
    assert [r.path for r in server.requests] == ["/apply-template", "/tokenize"]


def test_connecting_is_bounded_by_the_deadline_too(server):
    with fs.blackhole() as url:  # connecting never completes
        with LlamaCppModel(url, timeout=None, retry=None) as model:
            result, seconds = elapsed(model.chat, "hi", deadline=0.5)
    assert type(result) is lite.DeadlineExceeded and 0.45 <= seconds < 1.2


@pytest.mark.parametrize("deadline", [0, -1, math.nan, math.inf, "1", True])
def test_a_bad_deadline_is_refused_before_sending(server, deadline):
    with pytest.raises(lite.InvalidRequestError, match="deadline"):
        LlamaCppModel(server.url, deadline=deadline)
    with LlamaCppModel(server.url) as model:
        with pytest.raises(lite.InvalidRequestError, match="deadline"):
            model.stream("hi", deadline=deadline)
        with pytest.raises(lite.InvalidRequestError, match="deadline"):
            model.chat("hi", deadline=deadline)
    assert server.requests == []


def test_the_deadline_is_never_sent_to_the_server(server):
    server.script(fs.text_stream("ok"))
    with LlamaCppModel(server.url) as model:
        model.chat("hi", deadline=5)
    assert "deadline" not in server.requests[0].json()


def test_the_async_shim_raises_it_too(server):
    server.script(fs.sse_stream(*EVENTS, gap=0.1))
    model = AsyncLlamaCppModel(server.url)

    async def run():
        return [event async for event in model.stream("hi", deadline=0.5)]

    start = time.monotonic()
    with pytest.raises(lite.DeadlineExceeded):
        asyncio.run(asyncio.wait_for(run(), 5))
    assert time.monotonic() - start < 1.2
    model.close()


# -- real llama-servers ----------------------------------------------------------------------------


def metrics(base_url: str) -> dict:
    text = requests.get(base_url + "/metrics", timeout=5).text
    return {name: float(value) for name, value in re.findall(r"^llamacpp:(\w+) (\S+)$", text, re.M)}


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# llama-server checks the connection of a request that waits for a result only after a second in
# which no result at all was sent (server-queue.cpp: `recv_with_timeout` restarts its 1 s wait on
# every result of any task, a /metrics answer included). So whoever watches it must poll slowly.
SLOW_POLL = 1.5


@contextlib.contextmanager
def slot_held(base_url: str):
    """Hold the only slot with a long non-streamed generation (closed at the end, which cancels it)."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "hold the slot", "n_predict": 10 ** 7, "ignore_eos": True}).encode()  # context shift
    read_before = metrics(base_url)["prompt_tokens_total"]
    holder = socket.create_connection((host, int(port)))
    holder.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        assert wait_for(lambda: (lambda m: m["requests_processing"] == 1 and m["prompt_tokens_total"] > read_before)(
            metrics(base_url)), 10)  # generating: its prompt is read (and counted)
        yield
    finally:
        holder.close()
        assert wait_for(lambda: metrics(base_url)["requests_processing"] == 0, 10, SLOW_POLL)


@pytest.mark.real_server
def test_real_server_a_queued_request_past_its_deadline_is_dropped_before_it_runs(small_batch_server):
    url = small_batch_server.base_url
    with slot_held(url), LlamaCppModel(url) as model:
        before = metrics(url)
        result, seconds = elapsed(model.chat, "queued " * 30, deadline=1.0, max_tokens=5)
        assert type(result) is lite.DeadlineExceeded and 0.95 <= seconds < 1.5
        # the server noticed the closed connection and dropped the task from its queue, while
        # the holder still runs
        assert wait_for(lambda: metrics(url)["requests_deferred"] == 0, 10, SLOW_POLL)
        assert metrics(url)["requests_processing"] == 1
    after = metrics(url)
    assert after["prompt_tokens_total"] == before["prompt_tokens_total"]  # its prompt was never processed


@pytest.mark.real_server
def test_real_server_a_generation_past_its_deadline_is_cancelled(small_batch_server):
    url = small_batch_server.base_url
    with LlamaCppModel(url) as model:
        result, seconds = elapsed(lambda: list(model.stream("go on", deadline=1.5, ignore_eos=True,
                                                            max_tokens=10 ** 7)))  # endless (context shift)
        assert type(result) is lite.DeadlineExceeded and 1.45 <= seconds < 2.5
        assert wait_for(lambda: metrics(url)["requests_processing"] == 0, 10, SLOW_POLL)  # the slot is free again
        assert model.chat("hi", max_tokens=3, deadline=10).stop_reason in ("max_tokens", "end_turn")


class Recording(type(DEFAULT_RETRY)):  # type: ignore[misc]
    """DEFAULT_RETRY that records the status of each retried answer."""

    statuses: list = []

    def increment(self, *args, **kwargs):
        response = kwargs.get("response")
        if response is not None:
            Recording.statuses.append(response.status)
        return super().increment(*args, **kwargs)


def recording_policy():
    policy = copy.copy(DEFAULT_RETRY)
    policy.__class__ = Recording
    Recording.statuses = []
    return policy


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert process.poll() is None, "llama-server exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.002)
    pytest.fail(f"nothing listens on port {port}")


@contextlib.contextmanager
def llama_server(binary, *args: str):
    """Start llama-server without waiting for it to be ready; stop it by PID."""
    port = free_port()
    process = subprocess.Popen([str(binary), "--host", "127.0.0.1", "--port", str(port), "-t", "2", "--no-webui",
                                *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "LD_LIBRARY_PATH": str(binary.parent)})
    try:
        yield port, process
    finally:
        stop_process(process)


@pytest.mark.real_server
def test_real_server_a_model_still_loading_is_waited_for(llama_server_binary, tiny_model):
    # A large context makes loading take long enough (allocation and warm-up) to be seen.
    for _ in range(3):  # the 503 window is short: start again if the model won the race
        with llama_server(llama_server_binary, "-m", str(tiny_model), "-c", "131072", "-np", "1") as (port, process):
            wait_listening(port, process)
            with LlamaCppModel(f"http://127.0.0.1:{port}", retry=recording_policy()) as model:
                result = model.chat("hi", max_tokens=3)
        assert result.stop_reason in ("max_tokens", "end_turn")
        if 503 in Recording.statuses:
            break
    assert 503 in Recording.statuses and set(Recording.statuses) == {503}


@pytest.mark.real_server
def test_real_server_a_router_swapping_models_passes_the_503_on_and_it_is_waited_for(
        llama_server_binary, tiny_model, tmp_path):
    # With autoload (the default) a router holds a request while it swaps models in (no 503: the
    # read timeout must cover the swap). Without autoload, a model being loaded answers 503 through
    # the router once its process listens, until it is ready.
    for name in ("alpha", "beta"):
        (tmp_path / f"{name}.gguf").symlink_to(tiny_model)
    args = ["--models-dir", str(tmp_path), "--models-max", "1", "--no-models-autoload", "-c", "131072", "-np", "1"]
    with llama_server(llama_server_binary, *args) as (port, process):
        router = f"http://127.0.0.1:{port}"
        wait_listening(port, process)
        assert wait_for(lambda: requests.get(router + "/health", timeout=5).status_code == 200, 20)
        for attempt in range(3):
            model_id = ("alpha", "beta")[attempt % 2]  # each load evicts the other (--models-max 1)
            assert requests.post(router + "/models/load", json={"model": model_id}, timeout=30).json() == {"success": True}
            child = child_port(router, model_id)
            wait_listening(child, process)
            with LlamaCppModel(router, model_id=model_id, retry=recording_policy()) as model:
                result = model.chat("hi", max_tokens=3)
            assert result.stop_reason in ("max_tokens", "end_turn")
            if 503 in Recording.statuses:
                break
    assert 503 in Recording.statuses and set(Recording.statuses) == {503}


def child_port(router: str, model_id: str) -> int:
    """The port of the router's process for `model_id`, from its `/models` entry (`--port N`)."""
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for entry in requests.get(router + "/models", timeout=5).json()["data"]:
            args = entry["status"].get("args", [])
            if entry["id"] == model_id and "--port" in args and args[args.index("--port") + 1] != "0":
                return int(args[args.index("--port") + 1])
        time.sleep(0.01)
    pytest.fail(f"no port for {model_id}")
