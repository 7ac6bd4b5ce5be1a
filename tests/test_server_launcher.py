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


def test_one_model_or_router_mode_and_missing_files_are_refused_before_starting(llama_server_binary, tiny_model,
                                                                                tmp_path):
    for kwargs in ({}, {"model": tiny_model, "models_dir": tmp_path}):
        with pytest.raises(ServerStartError, match="either model= .* or models_dir="):
            LlamaServer(binary=llama_server_binary, **kwargs)
    not_gguf = tmp_path / "adapter.gguf"
    not_gguf.write_text("no")
    for kwargs, message in (({"models_dir": tmp_path / "none"}, "models_dir is not a folder"),
                            ({"model": tiny_model, "slot_save_path": tmp_path / "none"}, "slot_save_path is not"),
                            ({"model": tiny_model, "lora": [not_gguf]}, "adapter.gguf is not a GGUF file"),
                            ({"models_preset": tmp_path / "none.ini"}, "models_preset is not a file")):
        server = LlamaServer(binary=llama_server_binary, **kwargs)
        with pytest.raises(ServerStartError, match=message):
            server.start()
        assert server.pid is None


def test_typed_flags_reach_the_server(llama_server_binary, tiny_model):
    with LlamaServer(tiny_model, binary=llama_server_binary, reranking=True, metrics=True,
                     extra_args=["-t", "1", "--no-webui"]) as server:
        rerank = requests.post(server.base_url + "/v1/rerank", json={"query": "a", "documents": ["a", "b"]}, timeout=10)
        assert rerank.status_code == 200 and len(rerank.json()["results"]) == 2
        assert requests.get(server.base_url + "/metrics", timeout=10).status_code == 200
        embedding = requests.post(server.base_url + "/v1/embeddings", json={"input": "a"}, timeout=10)
        assert embedding.status_code == 200  # --reranking implies --embeddings


def child_pids(pid: int) -> set:
    children = set()
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.add(int(stat))
    return children


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to find the router's model processes")
def test_a_router_stops_its_model_processes_with_it(llama_server_binary, router_models):
    from llamacpp_lite import LlamaCppModel

    with LlamaServer(models_dir=router_models, binary=llama_server_binary,
                     extra_args=["-t", "1", "--no-webui", "-c", "512"]) as router:
        with LlamaCppModel(router.base_url) as client:
            assert client.load_model("alpha").status == "loaded"
        children = child_pids(router.pid)
        assert children  # the model runs in a process of its own
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
