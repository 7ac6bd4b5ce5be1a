"""Shared fixtures: a clean environment, mocked HTTP for the unit layer, and real llama-servers.

The real servers run the tiny model that `llamacpp_lite.testing.tiny_model` writes, once per
session. With CI=true a missing llama-server binary fails the run; elsewhere the real-server
tests are skipped with a loud reason.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator

import pytest
import responses

from llamacpp_lite import LlamaCppModel, ServerStartError
from llamacpp_lite.server import LlamaServer, describe_binary, find_llama_server

from tests import fault_server as fs
from tests.helpers import API_KEY, MOCK_URL


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which llama-server binary the real-server tests use, its build, and why it was chosen."""
    try:
        info = describe_binary()
    except ServerStartError as exc:
        return [f"llama-server: none ({exc})"]
    found_by = f" (found by {info.found_by})" if info.found_by not in info.origin else ""
    lines = [f"llama-server: {info.build} ({info.origin})", f"  path: {info.path}{found_by}"]
    if info.reason:
        lines.append(f"  why: {info.reason}")
    return lines


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove environment settings that would change how the client behaves."""
    for name in ("LLAMACPP_API_KEY", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,llama.test")


# -- unit layer -------------------------------------------------------------------------------


@pytest.fixture
def mock_api() -> Iterator[responses.RequestsMock]:
    """Mocked HTTP: every registered response must be requested."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def mock_model() -> Iterator[LlamaCppModel]:
    """A model pointed at the mocked server, without retries (so mocks are hit once)."""
    model = LlamaCppModel(MOCK_URL, retry=None)
    yield model
    model.close()


@pytest.fixture
def server() -> Iterator["fs.FaultServer"]:
    """A fault-injecting server on 127.0.0.1 (tests/fault_server.py), stopped after the test."""
    srv = fs.FaultServer()
    yield srv
    srv.stop()


@pytest.fixture
def make_model() -> Iterator:
    """Build models (default timeout (2, 2) s) that are closed after the test."""
    models = []

    def make(url: str, **kwargs: Any) -> LlamaCppModel:
        kwargs.setdefault("timeout", (2, 2))
        model = LlamaCppModel(url, **kwargs)
        models.append(model)
        return model

    yield make
    for model in models:
        model.close()


# -- real llama-servers ---------------------------------------------------------------------

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def llama_server_binary() -> pathlib.Path:
    """The llama-server binary; missing means failure in CI, a loud skip elsewhere."""
    try:
        return find_llama_server()
    except ServerStartError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but no llama-server binary: {exc}", pytrace=False)
        pytest.skip(f"REAL-SERVER TESTS SKIPPED: {exc}")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Where the tiny models are written, once per session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: pathlib.Path) -> pathlib.Path:
    """The tiny chat model (ChatML, Hermes-style tool calls)."""
    from llamacpp_lite.testing.tiny_model import write_tiny_model

    return write_tiny_model(model_dir / "tiny-chat.gguf", variant="chat")


@pytest.fixture(scope="session")
def tiny_reasoning_model(model_dir: pathlib.Path) -> pathlib.Path:
    """The tiny model with a Qwen3-style template that handles <think>."""
    from llamacpp_lite.testing.tiny_model import write_tiny_model

    return write_tiny_model(model_dir / "tiny-reasoning.gguf", variant="reasoning")


BASE_ARGS = ["-t", "2", "--no-webui"]


def _serve(binary: pathlib.Path, model: pathlib.Path, *args: str) -> Iterator[LlamaServer]:
    yield from _run(LlamaServer(model, binary=binary, extra_args=[*BASE_ARGS, *args]))


def _run(server: LlamaServer) -> Iterator[LlamaServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def real_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path) -> Iterator[LlamaServer]:
    """The default server: 4 slots (the server's default), context 2048."""
    yield from _serve(llama_server_binary, tiny_model)


@pytest.fixture(scope="session")
def small_ctx_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path) -> Iterator[LlamaServer]:
    """A server with a 256-token context and one slot, for overflow tests."""
    yield from _serve(llama_server_binary, tiny_model, "-c", "256", "-np", "1")


@pytest.fixture(scope="session")
def one_slot_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path) -> Iterator[LlamaServer]:
    """A server with a single slot, for cancellation tests (context shift lets one answer hold it for seconds)."""
    yield from _serve(llama_server_binary, tiny_model, "-c", "2048", "-np", "1", "--context-shift")


@pytest.fixture(scope="session")
def auth_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path) -> Iterator[LlamaServer]:
    """A server that requires the API key `API_KEY`."""
    yield from _serve(llama_server_binary, tiny_model, "-c", "2048", "-np", "1", "--api-key", API_KEY)


@pytest.fixture(scope="session")
def reasoning_server(llama_server_binary: pathlib.Path, tiny_reasoning_model: pathlib.Path) -> Iterator[LlamaServer]:
    """A server on the reasoning template (reasoning_content is split out)."""
    yield from _serve(llama_server_binary, tiny_reasoning_model, "-c", "2048", "-np", "1")


@pytest.fixture(scope="session")
def tiny_mmproj(model_dir: pathlib.Path) -> pathlib.Path:
    """The tiny multimodal projector: a vision (mlp) and an audio (ultravox) encoder."""
    from llamacpp_lite.testing import write_tiny_mmproj

    return write_tiny_mmproj(model_dir / "tiny-mmproj.gguf")


@pytest.fixture(scope="session")
def tiny_fim_model(model_dir: pathlib.Path) -> pathlib.Path:
    """The tiny chat model with fill-in-the-middle tokens (POST /infill works)."""
    from llamacpp_lite.testing import write_tiny_model

    return write_tiny_model(model_dir / "tiny-chat-fim.gguf", variant="chat", fim=True)


@pytest.fixture(scope="session")
def tiny_lora(model_dir: pathlib.Path) -> pathlib.Path:
    """A LoRA adapter for the tiny chat model (changes its text, not its structure)."""
    from llamacpp_lite.testing import write_tiny_lora

    return write_tiny_lora(model_dir / "tiny-lora.gguf")


@pytest.fixture(scope="session")
def mm_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path,
              tiny_mmproj: pathlib.Path) -> Iterator[LlamaServer]:
    """The tiny chat model with the projector: accepts image_url and input_audio parts."""
    yield from _serve(llama_server_binary, tiny_model, "-c", "2048", "-np", "1", "--mmproj", str(tiny_mmproj))


@pytest.fixture(scope="session")
def fim_server(llama_server_binary: pathlib.Path, tiny_fim_model: pathlib.Path) -> Iterator[LlamaServer]:
    """A server on the FIM model (POST /infill answers 200).

    `-b 512`: /infill keeps `input_extra` only within n_ctx - n_batch - 2 * n_predict tokens, so with
    the default batch (2048, the whole context) every extra chunk would be dropped.
    """
    yield from _serve(llama_server_binary, tiny_fim_model, "-c", "2048", "-np", "1", "-b", "512")


@pytest.fixture(scope="session")
def lora_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path,
                tiny_lora: pathlib.Path) -> Iterator[LlamaServer]:
    """The tiny chat model with the LoRA adapter loaded as id 0 (scale 1 unless a request says otherwise)."""
    yield from _serve(llama_server_binary, tiny_model, "-c", "2048", "-np", "1", "--lora", str(tiny_lora))


@pytest.fixture(scope="session")
def bad_tool_call_server(llama_server_binary: pathlib.Path, model_dir: pathlib.Path) -> Iterator[LlamaServer]:
    """A server on the bad_tool_call model: offered a tool with a string parameter, its call fails to parse."""
    from llamacpp_lite.testing import write_tiny_model

    model = write_tiny_model(model_dir / "tiny-bad-tool-call.gguf", variant="bad_tool_call")
    yield from _serve(llama_server_binary, model, "-c", "2048", "-np", "1")


@pytest.fixture(scope="session")
def embedding_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path) -> Iterator[LlamaServer]:
    """The tiny chat model serving embeddings with mean pooling (default `-ub` 512: the per-input limit)."""
    yield from _serve(llama_server_binary, tiny_model, "-c", "2048", "-t", "1", "--embeddings", "--pooling", "mean")


@pytest.fixture(scope="session")
def rerank_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path) -> Iterator[LlamaServer]:
    """The tiny chat model as a reranker (`--reranking`: rank pooling; a mean-pooling server cannot rerank)."""
    yield from _serve(llama_server_binary, tiny_model, "-c", "2048", "--reranking")


ROUTER_CTX = 2048  # the tiny model's training context: llama-server caps -c there


@pytest.fixture(scope="session")
def router_models(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A models folder for router mode: `alpha` (chat), `beta` (reasoning), `broken` (not loadable)."""
    from llamacpp_lite.testing import write_tiny_model

    folder = tmp_path_factory.mktemp("router-models")
    write_tiny_model(folder / "alpha.gguf", variant="chat")
    write_tiny_model(folder / "beta.gguf", variant="reasoning")
    (folder / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 60)  # a GGUF header cut short
    return folder


@pytest.fixture(scope="session")
def router_server(llama_server_binary: pathlib.Path, router_models: pathlib.Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A llama-server router over `router_models` that keeps one model loaded at a time (`--models-max 1`).

    Its models' processes inherit `--metrics` and `--slot-save-path` from it.
    """
    yield from _run(LlamaServer(models_dir=router_models, binary=llama_server_binary, metrics=True,
                                slot_save_path=tmp_path_factory.mktemp("router-slot-files"),
                                extra_args=[*BASE_ARGS, "--models-max", "1", "-c", str(ROUTER_CTX), "-np", "1"]))


@pytest.fixture(scope="session")
def feature_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path, tiny_lora: pathlib.Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """Two slots, the LoRA adapter (id 0, scale 1), a slot-save folder and `/metrics`."""
    yield from _run(LlamaServer(tiny_model, binary=llama_server_binary, lora=tiny_lora, metrics=True,
                                slot_save_path=tmp_path_factory.mktemp("slot-files"),
                                extra_args=[*BASE_ARGS, "-c", "2048", "-np", "2"]))


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """nginx (scripts/install-system-deps.sh installs it); missing means failure in CI, a loud skip elsewhere."""
    from tests.nginx import find_nginx

    found = find_nginx()
    if found is None:
        reason = "nginx is not installed (as root: bash scripts/install-system-deps.sh, or apt-get install nginx)"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(f"REVERSE-PROXY TESTS SKIPPED: {reason}")
    return found


@pytest.fixture
def real_model(real_server: LlamaServer) -> Iterator[LlamaCppModel]:
    """A client of the default real server."""
    with LlamaCppModel(real_server.base_url, timeout=(5, 60)) as model:
        yield model


@pytest.fixture(scope="session")
def small_batch_server(llama_server_binary: pathlib.Path, tiny_model: pathlib.Path) -> Iterator[LlamaServer]:
    """One slot, batches of 64 tokens, context shift, and `/metrics`.

    Small batches make a prompt of a few hundred tokens report its progress several times
    (`return_progress`: one event per batch); with context shift an `ignore_eos` generation goes
    on past the context (2048, the tiny model's), so one request can hold the slot for as long as
    a test needs, however fast the machine, and the next one waits in the queue.
    """
    yield from _serve(llama_server_binary, tiny_model, "-c", "2048", "-np", "1", "-b", "64", "-ub", "64",
                      "--context-shift", "--metrics")
