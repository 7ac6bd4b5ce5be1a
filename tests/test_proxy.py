"""Through a real nginx reverse proxy (tests/nginx.py) in front of real llama-servers.

`/llama/` balances two llama-servers (four slots each) round-robin; `/spare/` goes to one port where
a test starts (and kills) a llama-server of its own. Clients use a `base_url` with the path prefix.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import signal
import socket
import subprocess
import time
from typing import Iterator

import pytest
import requests

from llamacpp_lite import LlamaCppModel, StreamError
from llamacpp_lite.server import LlamaServer
from tests.nginx import Nginx, free_port

pytestmark = pytest.mark.real_server

CHAT_PATH = "/v1/chat/completions"
# One thread per server: llama.cpp's compute threads spin while they wait, so two servers with two
# threads each on a 2-core machine slow each other down tenfold under load.
BACKEND_ARGS = ["-t", "1", "--no-webui"]
LOADING_CTX = "262144"  # a big KV cache makes the model load (the 503 window) last ~0.2 s instead of ~0.02 s


class Proxy:
    def __init__(self, nginx: Nginx, backends: list, spare_port: int) -> None:
        self.nginx = nginx
        self.backends = backends
        self.spare_port = spare_port
        self.url = nginx.url + "/llama"
        self.spare_url = nginx.url + "/spare"

    def busy(self) -> list:
        """`(backend index, slot id)` of every slot processing a task (asked directly, not through nginx)."""
        return [(index, slot["id"]) for index, backend in enumerate(self.backends)
                for slot in requests.get(backend.base_url + "/slots", timeout=5).json() if slot["is_processing"]]


@pytest.fixture(scope="module")
def proxy(nginx_binary, llama_server_binary, tiny_model, tmp_path_factory) -> Iterator[Proxy]:
    # As many slots as the load test has concurrent requests: a request that has to wait for a
    # slot is deferred by llama-server and taken up again up to a second later.
    backends = [LlamaServer(tiny_model, binary=llama_server_binary, extra_args=[*BACKEND_ARGS, "-c", "8192", "-np", "4"])
                for _ in range(2)]
    nginx = None
    try:
        for backend in backends:
            backend.start()
        spare_port = free_port()
        nginx = Nginx(nginx_binary, tmp_path_factory.mktemp("nginx"), {
            "llama": [f"127.0.0.1:{backend.port}" for backend in backends],
            "spare": [f"127.0.0.1:{spare_port}"],
        }).start()
        yield Proxy(nginx, backends, spare_port)
    finally:
        if nginx is not None:
            nginx.stop()
        for backend in backends:
            backend.stop()


def test_streamed_tokens_arrive_one_by_one_through_the_proxy(proxy):
    busy_at_first_delta = None
    deltas = 0
    with LlamaCppModel(proxy.url, timeout=(5, 60)) as model:
        for event in model.stream("Tell me a long story.", max_tokens=400, ignore_eos=True):
            if "contentBlockDelta" in event:
                deltas += 1
                if busy_at_first_delta is None:
                    busy_at_first_delta = proxy.busy()
    assert busy_at_first_delta  # the first token was not held back: the backend was still generating
    assert deltas > 100  # token by token, not one buffered block


def test_closing_a_stream_frees_the_upstream_slot(proxy):
    max_tokens = 1900
    with LlamaCppModel(proxy.url, timeout=(5, 60)) as model:
        with model.stream("Go on and on.", max_tokens=max_tokens, ignore_eos=True) as events:
            for _ in range(5):
                next(event for event in events if "contentBlockDelta" in event)
            ((serving, slot_id),) = proxy.busy()
    backend = proxy.backends[serving]
    deadline = time.monotonic() + 10
    while True:
        slot = requests.get(backend.base_url + "/slots", timeout=5).json()[slot_id]
        if not slot["is_processing"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert slot["is_processing"] is False
    assert slot["next_token"][0]["n_decoded"] < max_tokens - 100  # cancelled, not run to its end


def first_health_status(port: int, process: subprocess.Popen, timeout: float = 30.0) -> int:
    """Poll a starting llama-server's /health on `port` (directly) as fast as possible; return the first status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                head = sock.recv(64)
            if head.startswith(b"HTTP/1.1 "):
                return int(head[9:12])
        except OSError:
            pass
        time.sleep(0.0005)
    raise AssertionError(f"the spare llama-server did not answer /health (exit code {process.poll()})")


def test_503_while_a_backend_loads_its_model_is_retried(proxy, llama_server_binary, tiny_model, tmp_path):
    env = {**os.environ, "LD_LIBRARY_PATH": str(pathlib.Path(llama_server_binary).parent)}
    command = [str(llama_server_binary), "-m", str(tiny_model), "--host", "127.0.0.1", "--port", str(proxy.spare_port),
               *BACKEND_ARGS, "-c", LOADING_CTX, "-np", "1"]
    for attempt in range(3):  # the load takes ~0.2 s: a machine that is much faster gets another try
        with open(tmp_path / f"spare-{attempt}.log", "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            if first_health_status(proxy.spare_port, process) != 503:
                continue
            with LlamaCppModel(proxy.spare_url, timeout=(5, 60)) as model:  # DEFAULT_RETRY: 503 is retried
                result = model.chat("hi", max_tokens=4, ignore_eos=True)
            assert result.usage["outputTokens"] == 4
            rows = proxy.nginx.requests_until(lambda rows: ("/spare" + CHAT_PATH, 200) in [row[:2] for row in rows])
            statuses = [status for path, status, _, _ in rows if path == "/spare" + CHAT_PATH]
            assert statuses[0] == 503 and statuses[-1] == 200, statuses  # nginx passed the 503s, then the answer
            return
        finally:
            process.terminate()
            process.wait(10)
    pytest.fail("the spare llama-server never answered 503 while loading (loaded too fast to test)")


def test_an_upstream_that_dies_mid_stream_raises_stream_error(proxy, llama_server_binary, tiny_model):
    spare = LlamaServer(tiny_model, binary=llama_server_binary, port=proxy.spare_port,
                        extra_args=[*BACKEND_ARGS, "-c", "2048", "-np", "1"])
    spare.start()
    try:
        with LlamaCppModel(proxy.spare_url, timeout=(5, 60)) as model:
            events = model.stream("Go on and on.", max_tokens=1900, ignore_eos=True)
            for _ in range(3):
                next(event for event in events if "contentBlockDelta" in event)
            assert spare.pid is not None
            os.kill(spare.pid, signal.SIGKILL)
            with pytest.raises(StreamError, match="broke off"):
                for _ in events:
                    pass
    finally:
        spare.stop()
    assert any("upstream prematurely closed" in line for line in proxy.nginx.errors().splitlines())


def test_100_requests_spread_over_both_backends_all_succeed(proxy):
    before = len(proxy.nginx.requests())
    with LlamaCppModel(proxy.url, timeout=(5, 60)) as model, \
            concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: model.chat(f"request {n}", max_tokens=4, ignore_eos=True), range(100)))
    assert [result.usage["outputTokens"] for result in results] == [4] * 100
    rows = [row for row in proxy.nginx.requests_until(lambda rows: len(rows) >= before + 100)[before:]
            if row[0] == "/llama" + CHAT_PATH]
    assert len(rows) == 100 and {status for _, status, _, _ in rows} == {200}
    served = {f"127.0.0.1:{backend.port}": 0 for backend in proxy.backends}
    for _, _, upstream, _ in rows:
        served[upstream] += 1
    assert all(count >= 20 for count in served.values()), served  # round-robin: about half each
