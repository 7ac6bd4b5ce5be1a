"""LlamaServer: start, health, stop, and the failure paths with clear errors."""

from __future__ import annotations

import os

import pytest
import requests

from llamacpp_lite import ServerStartError
from llamacpp_lite.server import LlamaServer, find_llama_server

pytestmark = pytest.mark.real_server


def test_bad_binary_path_is_a_clear_error(tmp_path):
    with pytest.raises(ServerStartError, match="not found or not executable: .*nope"):
        find_llama_server(tmp_path / "nope")


def test_binary_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(ServerStartError, match=r"\$LLAMA_SERVER_BIN"):
        find_llama_server()


def test_a_model_that_is_not_gguf_is_refused_before_starting(llama_server_binary, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ServerStartError, match="is not a GGUF file"):
        LlamaServer(fake, binary=llama_server_binary).start()


def test_a_broken_gguf_fails_fast_with_the_log_tail(llama_server_binary, tiny_model, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:4096])
    server = LlamaServer(broken, binary=llama_server_binary, extra_args=["-t", "2"], startup_timeout=60)
    with pytest.raises(ServerStartError, match="exited with code") as info:
        server.start()
    assert "llama" in str(info.value).lower() and str(broken) in str(info.value)
    assert server.pid is None


def test_start_serves_on_loopback_and_stop_ends_the_process(llama_server_binary, tiny_model):
    with LlamaServer(tiny_model, binary=llama_server_binary, extra_args=["-t", "2", "--no-webui"]) as server:
        pid = server.pid
        assert server.base_url.startswith("http://127.0.0.1:")
        assert requests.get(server.base_url + "/health", timeout=5).json() == {"status": "ok"}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # idempotent
