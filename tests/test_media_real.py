"""Media formats and mixed content against a real llama-server with the tiny projector.

Every format the library accepts must be decoded by the server: the request answers 200 and
the image (or audio) adds its prompt tokens. Formats it refuses are shown to fail on the server
too, so refusing them early loses nothing.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests

from llamacpp_lite import BadRequestError, InvalidRequestError, LlamaCppModel
from llamacpp_lite._content import AUDIO_FORMATS, IMAGE_FORMATS
from llamacpp_lite._wire import build_chat_request
from llamacpp_lite.server import LlamaServer
from llamacpp_lite.testing.media import tiny_png, tiny_wav
from llamacpp_lite.testing.tiny_mmproj import TOKENS_PER_AUDIO_CHUNK, TOKENS_PER_IMAGE
from tests import media

pytestmark = pytest.mark.real_server


@pytest.fixture(scope="module")
def mm_model(mm_server: LlamaServer) -> Iterator[LlamaCppModel]:
    with LlamaCppModel(mm_server.base_url, timeout=(5, 120)) as model:
        yield model


def prompt_tokens(model: LlamaCppModel, *blocks: Any) -> int:
    content = [*blocks, {"text": "What is this?"}]
    return model.chat([{"role": "user", "content": content}], max_tokens=1).usage["inputTokens"]


@pytest.fixture(scope="module")
def text_tokens(mm_model: LlamaCppModel) -> int:
    return prompt_tokens(mm_model)


def test_the_encoders_in_tests_media_cover_every_accepted_format():
    assert set(media.IMAGES) == set(IMAGE_FORMATS)
    assert set(media.AUDIO) == set(AUDIO_FORMATS.values())  # the other audio names are aliases of these


@pytest.mark.parametrize("fmt", sorted(media.IMAGES))
def test_every_accepted_image_format_is_decoded(mm_model, text_tokens, fmt):
    image = {"image": {"format": fmt, "source": {"bytes": media.IMAGES[fmt]()}}}
    assert prompt_tokens(mm_model, image) == text_tokens + TOKENS_PER_IMAGE


@pytest.mark.parametrize("fmt", sorted(media.AUDIO))
def test_every_accepted_audio_format_is_decoded(mm_model, text_tokens, fmt):
    audio = {"audio": {"format": fmt, "source": {"bytes": media.AUDIO[fmt]()}}}
    assert prompt_tokens(mm_model, audio) == text_tokens + TOKENS_PER_AUDIO_CHUNK


@pytest.mark.parametrize("kind,data", [
    ("image", b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"),
    ("audio", b"OggS\x00\x02" + bytes(64)),
], ids=["webp", "ogg"])
def test_refused_formats_fail_on_the_server_too(mm_model, kind, data):
    """WebP and Ogg bytes, sent under a name the library accepts, are not decodable by the server."""
    block = {kind: {"format": "png" if kind == "image" else "wav", "source": {"bytes": data}}}
    with pytest.raises(BadRequestError, match="Failed to load image or audio file"):
        mm_model.chat([{"role": "user", "content": [block]}], max_tokens=1)
    renamed = {kind: {**block[kind], "format": "webp" if kind == "image" else "ogg"}}
    with pytest.raises(InvalidRequestError, match="not decodable by llama-server"):
        mm_model.chat([{"role": "user", "content": [renamed]}], max_tokens=1)


def test_a_block_with_media_and_text_sends_both(mm_model, text_tokens):
    """The reference provider's documented shape: before #11 the audio was dropped without a word."""
    image = {"image": {"format": "png", "source": {"bytes": tiny_png()}}, "text": "Describe this image"}
    audio = {"audio": {"format": "wav", "source": {"bytes": tiny_wav()}}, "text": "What do you hear in this audio?"}
    tokens = mm_model.chat([{"role": "user", "content": [image, audio]}], max_tokens=1).usage["inputTokens"]
    assert tokens > text_tokens + TOKENS_PER_IMAGE + TOKENS_PER_AUDIO_CHUNK


def test_system_messages_in_messages_follow_the_system_prompt(mm_server, mm_model):
    messages = [{"role": "system", "content": [{"text": "SYSTEM-IN-MESSAGES"}]},
                {"role": "user", "content": [{"text": "hi"}]},
                {"role": "system", "content": "SYSTEM-LATER"}]
    body = build_chat_request(messages, model_id="default", params={}, system_prompt="SYSTEM-PROMPT")
    prompt = requests.post(mm_server.base_url + "/apply-template", json=body, timeout=30).json()["prompt"]
    positions = [prompt.index(text) for text in ("SYSTEM-PROMPT", "SYSTEM-IN-MESSAGES", "hi", "SYSTEM-LATER")]
    assert positions == sorted(positions)
    result = mm_model.chat(messages, system_prompt="SYSTEM-PROMPT", max_tokens=1)
    assert result.usage["inputTokens"] == len(mm_model.tokenize(prompt))
