"""Router mode against a real llama-server router (`--models-dir`, `--models-max 1`).

The router's models: `alpha` (the tiny chat model), `beta` (the reasoning variant: its answers
carry reasoning, which tells which model answered) and `broken` (a cut-short file). With one model
loaded at a time every switch between alpha and beta is a real unload and load.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time

import pytest

from llamacpp_lite import (
    AsyncLlamaCppModel,
    LlamaCppModel,
    ModelLoadError,
    NotSupportedError,
    UnknownModelError,
)
from llamacpp_lite._server_info import MODEL_STATUSES
from tests.conftest import ROUTER_CTX

pytestmark = pytest.mark.real_server


@pytest.fixture
def router(router_server):
    """A client of the router (no model configured) that is closed after the test."""
    with LlamaCppModel(router_server.base_url, timeout=(5, 60)) as model:
        yield model


def statuses(model: LlamaCppModel) -> dict:
    return {entry.id: entry.status for entry in model.models()}


def test_models_lists_every_model_with_its_status(router):
    models = router.models()
    assert sorted(entry.id for entry in models) == ["alpha", "beta", "broken"]
    assert all(entry.status in MODEL_STATUSES and "status" in entry.raw for entry in models)


def test_load_unload_status_and_props_per_model(router):
    loaded = router.load_model("alpha")
    assert (loaded.id, loaded.status, loaded.n_ctx) == ("alpha", "loaded", ROUTER_CTX)
    assert statuses(router)["alpha"] == "loaded" and router.load_model("alpha").status == "loaded"
    props = router.props("alpha")
    assert props.n_ctx == ROUTER_CTX and props.model_path.endswith("alpha.gguf") and not props.is_router
    own = router.props()
    assert own.is_router and own.n_ctx is None  # the router's own /props says n_ctx 0
    unloaded = router.unload_model("alpha")
    assert unloaded.status == "unloaded" and statuses(router)["alpha"] == "unloaded"
    assert router.unload_model("alpha").status == "unloaded"  # already unloaded: nothing to do


def test_context_window_limit_is_the_configured_models_and_a_failed_look_up_is_not_repeated(router_server):
    with LlamaCppModel(router_server.base_url, model_id="beta") as beta:
        assert beta.context_window_limit == ROUTER_CTX
    with LlamaCppModel(router_server.base_url, model_id="gamma") as gamma:
        asked = []
        look_up = gamma._server_context_size
        gamma._server_context_size = lambda: asked.append(1) or look_up()  # type: ignore[method-assign]
        assert gamma.context_window_limit is None and gamma.context_window_limit is None
        assert asked == [1]


def test_chats_alternating_between_two_models_all_succeed(router_server):
    order = ["alpha", "beta", "alpha", "beta"]
    with LlamaCppModel(router_server.base_url, timeout=(5, 60)) as client:
        for model_id in order:
            client.update_config(model_id=model_id)
            result = client.chat("hello", max_tokens=8, temperature=0)
            assert result.usage["outputTokens"] > 0
            assert bool(result.reasoning) == (model_id == "beta"), model_id  # which model answered
            now = statuses(client)
            assert now[model_id] == "loaded" and list(now.values()).count("loaded") == 1  # --models-max 1


def test_a_chat_for_a_model_that_is_still_loading_succeeds(router):
    router.unload_model("beta")
    router.unload_model("alpha")
    started = router.load_model("beta", wait=False)
    assert started.status in ("loading", "loaded")
    router.update_config(model_id="beta")
    assert router.chat("hi", max_tokens=4).usage["outputTokens"] > 0
    assert statuses(router)["beta"] == "loaded"


def test_a_load_at_the_model_limit_waits_until_the_busy_model_is_idle(router_server, caplog):
    caplog.set_level(logging.DEBUG, logger="llamacpp_lite")
    with LlamaCppModel(router_server.base_url, model_id="alpha", timeout=(5, 60)) as alpha, \
            LlamaCppModel(router_server.base_url, timeout=(5, 60)) as other:
        other.unload_model("beta")
        outcome: dict = {}
        with alpha.stream("Tell me everything.", max_tokens=ROUTER_CTX, ignore_eos=True) as events:
            next(event for event in events if "contentBlockDelta" in event)  # alpha's only slot is generating

            def load() -> None:
                try:
                    outcome["model"] = other.load_model("beta", timeout=60)
                except Exception as exc:  # handed to the test thread
                    outcome["error"] = exc

            loader = threading.Thread(target=load)
            loader.start()
            deadline = time.monotonic() + 10
            while "model limit reached" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
            assert "model limit reached" in caplog.text  # the router said 500 and the load was asked again
        loader.join(60)  # the stream is closed: alpha is idle and can be evicted
        assert "error" not in outcome, outcome.get("error")
        assert outcome["model"].status == "loaded" and statuses(other)["beta"] == "loaded"


def test_an_unknown_model_is_named_in_the_error(router_server):
    with LlamaCppModel(router_server.base_url, model_id="gamma") as gamma:
        with pytest.raises(UnknownModelError) as caught:
            gamma.chat("hi", max_tokens=2)
        assert caught.value.model_id == "gamma" and caught.value.status_code == 400
        assert "alpha" in caught.value.available and "'gamma' not found" in str(caught.value)
        for call in (lambda: gamma.load_model("gamma"), lambda: gamma.props("gamma"), gamma.slots):
            with pytest.raises(UnknownModelError, match="'gamma'"):
                call()


def test_a_model_that_cannot_load_raises_model_load_error(router):
    with pytest.raises(ModelLoadError) as caught:
        router.load_model("broken", timeout=30)
    assert caught.value.model_id == "broken" and caught.value.exit_code not in (None, 0)
    assert statuses(router)["broken"] == "failed"


def test_slot_actions_and_metrics_reach_the_named_models_process(router_server):
    with LlamaCppModel(router_server.base_url, model_id="alpha", timeout=(5, 60)) as alpha:
        before = alpha.metrics()["llamacpp:tokens_predicted_total"]
        prompt = "Cache this prompt in alpha's only slot."
        alpha.chat(prompt, max_tokens=3, ignore_eos=True, id_slot=0, cache_prompt=True)
        assert alpha.metrics()["llamacpp:tokens_predicted_total"] == before + 3
        saved = alpha.save_slot(0, "alpha.bin")
        assert alpha.erase_slot(0).n_erased == saved.n_saved > 0
        assert alpha.restore_slot(0, "alpha.bin").n_restored == saved.n_saved
        again = alpha.chat(prompt, max_tokens=1, id_slot=0, cache_prompt=True)
        assert again.usage["cacheReadInputTokens"] > 0


def test_lora_scales_cannot_be_set_through_a_router(router_server):
    with LlamaCppModel(router_server.base_url, model_id="alpha") as alpha:
        assert alpha.lora_adapters() == []  # routed to alpha, which has no adapter
        with pytest.raises(NotSupportedError, match="router cannot set LoRA scales"):
            alpha.set_lora_adapters({})


def test_the_async_twins_manage_models(router_server):
    async def main() -> tuple:
        async with AsyncLlamaCppModel(router_server.base_url, model_id="alpha") as model:
            loaded = await model.load_model("alpha")
            slots = await model.slots()
            listed = await model.models()
            return loaded.status, len(slots), {entry.id for entry in listed}

    assert asyncio.run(main()) == ("loaded", 1, {"alpha", "beta", "broken"})


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamacpp_lite", *args], capture_output=True, text=True, timeout=120)


def test_the_models_command_lists_loads_and_unloads(router_server):
    url = router_server.base_url
    loaded = cli("models", "--base-url", url, "--load", "beta", "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == [{"id": "beta", "status": "loaded", "aliases": [], "n_ctx": ROUTER_CTX}]
    listed = cli("models", "--base-url", url)
    rows = dict(line.split(None, 1) for line in listed.stdout.splitlines())
    assert rows["beta"].startswith("loaded") and set(rows) == {"alpha", "beta", "broken"}
    assert cli("models", "--base-url", url, "--unload", "beta").stdout.split()[:2] == ["beta", "unloaded"]
    props = cli("props", "--base-url", url, "--model", "alpha", "--json")
    assert json.loads(props.stdout)["n_ctx"] == ROUTER_CTX
    unknown = cli("chat", "--base-url", url, "--model", "gamma", "hi")
    assert unknown.returncode == 6 and "'gamma' not found; the server offers: alpha, beta, broken" in unknown.stderr


def test_the_inference_endpoints_route_by_model_id(router_server):
    """Every POST names the configured model, which is what a router routes by."""
    with LlamaCppModel(router_server.base_url, model_id="beta", timeout=(5, 60)) as client:
        assert client.tokenize("hello") and client.detokenize(client.tokenize("hello")) == "hello"
        assert client.count_tokens("hello", estimate=False) > 5  # /apply-template, then /tokenize
        assert client.complete("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", max_tokens=4).text
        assert statuses(client)["beta"] == "loaded"
        client.update_config(model_id="alpha")
        assert client.complete("hi", max_tokens=2).completion_tokens > 0
        assert statuses(client)["alpha"] == "loaded"
