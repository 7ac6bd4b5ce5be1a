"""Slots, LoRA adapters and metrics against a real llama-server started with `--slot-save-path`,
`--lora` (the suite's tiny adapter) and `--metrics`, through `LlamaServer`'s typed arguments."""

from __future__ import annotations

import asyncio

import pytest

from llamacpp_lite import (
    AsyncLlamaCppModel,
    BadRequestError,
    InvalidRequestError,
    LlamaCppModel,
    LoraAdapter,
    NotSupportedError,
)

pytestmark = pytest.mark.real_server

PROMPT = "Pin this conversation to one slot so that its prompt is computed only once. " * 3
GREEDY = {"max_tokens": 24, "temperature": 0}


@pytest.fixture
def features(feature_server):
    with LlamaCppModel(feature_server.base_url, timeout=(5, 60)) as model:
        yield model


def cached(model: LlamaCppModel, slot: int) -> int:
    """Ask PROMPT on `slot` (prompt cache on) and return the prompt tokens read from the cache."""
    result = model.chat(PROMPT, max_tokens=1, id_slot=slot, cache_prompt=True)
    return result.usage.get("cacheReadInputTokens", 0)


def test_slots_are_typed(features):
    slots = features.slots()
    assert [slot.id for slot in slots] == [0, 1]
    assert all(slot.n_ctx == 1024 and slot.is_processing is False for slot in slots)


def test_save_erase_restore_a_slot_and_the_restored_slot_answers_from_its_cache(features):
    features.erase_slot(0)
    features.erase_slot(1)
    assert cached(features, 0) == 0
    assert cached(features, 0) > 0  # the same conversation, pinned to the same slot: a cache hit
    saved = features.save_slot(0, "conversation.bin")
    assert saved.id_slot == 0 and saved.filename == "conversation.bin" and saved.n_saved > 0 and saved.n_written > 0
    erased = features.erase_slot(0)
    assert erased.n_erased == saved.n_saved
    assert features.erase_slot(1).n_erased >= 0
    restored = features.restore_slot(1, "conversation.bin")
    assert (restored.id_slot, restored.n_restored, restored.n_read) == (1, saved.n_saved, saved.n_written)
    assert cached(features, 1) > 0  # slot 1 never saw this prompt: its cache came from the file
    assert cached(features, 0) == 0  # slot 0 was erased


def test_slot_ids_and_file_names_are_checked_and_server_refusals_raise(features, real_server):
    for call in (lambda: features.save_slot(2, "x.bin"), lambda: features.erase_slot(-1),
                 lambda: features.save_slot(0, "../x.bin")):
        with pytest.raises(InvalidRequestError):
            call()
    with pytest.raises(BadRequestError, match="Unable to restore slot"):
        features.restore_slot(0, "never-saved.bin")
    with LlamaCppModel(real_server.base_url) as plain, pytest.raises(NotSupportedError, match="--slot-save-path"):
        plain.erase_slot(0)


def test_lora_adapters_are_listed(features, tiny_lora):
    assert features.lora_adapters() == [LoraAdapter(id=0, path=str(tiny_lora), scale=1.0,
                                                    raw=features.lora_adapters()[0].raw)]


def test_per_request_lora_in_both_forms(features, real_server):
    with LlamaCppModel(real_server.base_url) as plain:
        without_adapter = plain.chat("hello there", **GREEDY).text
    # an explicit `lora` on every request, as server-facts §9 advises (the cache is not checked otherwise)
    with_adapter = features.chat("hello there", lora={0: 1.0}, **GREEDY).text
    off = features.chat("hello there", lora={0: 0.0}, **GREEDY).text
    off_as_list = features.chat("hello there", lora=[{"id": 0, "scale": 0}], **GREEDY).text
    assert off == off_as_list == without_adapter != with_adapter


def test_set_lora_adapters_changes_the_global_scale(features):
    try:
        changed = features.set_lora_adapters({0: 0.0})
        assert [(adapter.id, adapter.scale) for adapter in changed] == [(0, 0.0)]
        assert features.lora_adapters()[0].scale == 0.0
        off = features.chat("hello there", cache_prompt=False, **GREEDY).text
        assert off == features.chat("hello there", lora={0: 0.0}, **GREEDY).text
        assert off != features.chat("hello there", lora={0: 1.0}, **GREEDY).text
        with pytest.raises(InvalidRequestError, match="no LoRA adapter with id 5"):
            features.set_lora_adapters({5: 1.0})
    finally:
        features.set_lora_adapters({0: 1.0})
    assert features.lora_adapters()[0].scale == 1.0


def test_metrics_are_parsed_and_count_what_was_generated(features, real_server):
    before = features.metrics()
    assert before["llamacpp:requests_processing"] == 0.0 and all(isinstance(v, float) for v in before.values())
    result = features.chat("Count me.", max_tokens=7, ignore_eos=True, cache_prompt=False)
    after = features.metrics()
    grown = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    assert grown == result.usage["outputTokens"] == 7
    with LlamaCppModel(real_server.base_url) as plain, pytest.raises(NotSupportedError, match="--metrics"):
        plain.metrics()


def test_the_async_twins(feature_server):
    async def main() -> tuple:
        async with AsyncLlamaCppModel(feature_server.base_url) as model:
            slots = await model.slots()
            adapters = await model.lora_adapters()
            metrics = await model.metrics()
            erased = await model.erase_slot(1)
            return len(slots), adapters[0].id, "llamacpp:prompt_tokens_total" in metrics, erased.id_slot

    assert asyncio.run(main()) == (2, 0, True, 1)
