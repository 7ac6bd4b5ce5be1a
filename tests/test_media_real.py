"""Images and audio against a real llama-server with the tiny projector: sync, async and a Strands Agent.

The proof that media arrived is exact: the projector turns each image into `TOKENS_PER_IMAGE`
prompt tokens and each started 30 s of audio into `TOKENS_PER_AUDIO_CHUNK`, so a request's
`usage.inputTokens` must grow by exactly that much over the same text without the media.
Every format the library accepts must be decoded by the server; formats it refuses are shown to
fail on the server too, so refusing them early loses nothing. Media the server cannot decode give
the library's `BadRequestError` with the server's message, and the server stays up.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, Callable, Iterator, NamedTuple

import pytest
import requests

from llamacpp_lite import (
    AsyncLlamaCppModel,
    BadRequestError,
    InvalidRequestError,
    LlamaCppModel,
    ModalityNotSupportedError,
    ServerStartError,
)
from llamacpp_lite._content import AUDIO_FORMATS, IMAGE_FORMATS
from llamacpp_lite._result import collect_result
from llamacpp_lite._wire import build_chat_request
from llamacpp_lite.server import LlamaServer
from llamacpp_lite.testing import write_tiny_mmproj
from llamacpp_lite.testing.media import tiny_png, tiny_wav
from llamacpp_lite.testing.tiny_mmproj import TOKENS_PER_AUDIO_CHUNK, TOKENS_PER_IMAGE
from tests import media
from tests.conftest import IN_CI

pytestmark = pytest.mark.real_server

ANSWER = {"max_tokens": 200, "temperature": 0}  # the tiny model ends its answers well before 200 tokens
MEDIA_TOKENS = {"image": TOKENS_PER_IMAGE, "audio": TOKENS_PER_AUDIO_CHUNK}  # for media of at most 30 s
SERVER_ARGS = ["-t", "2", "--no-webui", "-c", "2048", "-np", "1"]


def image_block(data: bytes | None = None, fmt: str = "png") -> dict:
    return {"image": {"format": fmt, "source": {"bytes": tiny_png() if data is None else data}}}


def audio_block(data: bytes | None = None, fmt: str = "wav") -> dict:
    return {"audio": {"format": fmt, "source": {"bytes": tiny_wav() if data is None else data}}}


# -- the three ways in: LlamaCppModel, AsyncLlamaCppModel.stream, a Strands Agent ------------------


class Answer(NamedTuple):
    input_tokens: int
    text: str


def via_sync(model: LlamaCppModel, messages: list) -> Answer:
    result = model.chat(messages)
    return Answer(result.usage["inputTokens"], result.text)


def via_async(model: LlamaCppModel, messages: list) -> Answer:
    async def run() -> list:
        return [event async for event in AsyncLlamaCppModel.wrap(model).stream(messages)]

    result = collect_result(asyncio.run(run()))
    return Answer(result.usage["inputTokens"], result.text)


def strands_agent() -> Any:
    """`strands.Agent`; without the strands extra the Agent tests skip, except with CI=true."""
    if not IN_CI:
        pytest.importorskip("strands", reason="the strands extra is not installed")
    from strands import Agent

    return Agent


def via_agent(model: LlamaCppModel, messages: list) -> Answer:
    """The last message is the Agent's prompt, the ones before its history."""
    agent = strands_agent()(model=AsyncLlamaCppModel.wrap(model), messages=messages[:-1], callback_handler=None)
    result = agent(messages[-1]["content"])
    return Answer(result.metrics.accumulated_usage["inputTokens"], str(result).strip())


def record_requests(model: AsyncLlamaCppModel) -> list:
    """Keep the messages of every request `model` streams, as an Agent passed them.

    An Agent may change its history when it sends it (an empty answer goes out as
    "[blank text]"), so the proof compares with what was sent, not with `agent.messages`.
    """
    sent: list = []
    stream = model.sync.stream

    def recording(messages: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(list(messages))
        return stream(messages, *args, **kwargs)

    model.sync.stream = recording  # type: ignore[method-assign]
    return sent


PATHS: dict[str, Callable[[LlamaCppModel, list], Answer]] = {"sync": via_sync, "async": via_async,
                                                             "agent": via_agent}


def user(*blocks: Any) -> list:
    return [{"role": "user", "content": list(blocks)}]


def without_media(messages: list) -> list:
    """The same messages with every image and audio part removed (blocks left empty dropped)."""
    stripped = []
    for message in messages:
        blocks = [{k: v for k, v in block.items() if k not in MEDIA_TOKENS} for block in message["content"]]
        stripped.append({**message, "content": [block for block in blocks if block]})
    return stripped


def media_tokens(messages: list) -> int:
    return sum(MEDIA_TOKENS[key] for message in messages for block in message["content"] for key in block
               if key in MEDIA_TOKENS)


def text_tokens(model: LlamaCppModel, messages: list) -> int:
    """The prompt tokens of `messages` with their media removed."""
    return model.chat(without_media(messages), max_tokens=1).usage["inputTokens"]


# -- servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mm_model(mm_server: LlamaServer) -> Iterator[LlamaCppModel]:
    with LlamaCppModel(mm_server.base_url, timeout=(5, 120), params=ANSWER) as model:
        yield model


def _projector_server(binary: pathlib.Path, model: pathlib.Path, projector: pathlib.Path) -> Iterator[LlamaServer]:
    with LlamaServer(model, binary=binary, mmproj=projector, extra_args=SERVER_ARGS) as server:
        yield server


@pytest.fixture(scope="module")
def vision_only_server(llama_server_binary, tiny_model, model_dir) -> Iterator[LlamaServer]:
    yield from _projector_server(llama_server_binary, tiny_model,
                                 write_tiny_mmproj(model_dir / "tiny-mmproj-vision.gguf", audio=False))


@pytest.fixture(scope="module")
def audio_only_server(llama_server_binary, tiny_model, model_dir) -> Iterator[LlamaServer]:
    yield from _projector_server(llama_server_binary, tiny_model,
                                 write_tiny_mmproj(model_dir / "tiny-mmproj-audio.gguf", vision=False))


def test_llama_server_passes_the_projector(vision_only_server, audio_only_server, mm_server):
    def modalities(server: LlamaServer) -> dict:
        with LlamaCppModel(server.base_url) as model:
            return {k: v for k, v in model.props().modalities.items() if k != "video"}

    assert vision_only_server.mmproj is not None and vision_only_server.mmproj.name == "tiny-mmproj-vision.gguf"
    assert modalities(vision_only_server) == {"vision": True, "audio": False}
    assert modalities(audio_only_server) == {"vision": False, "audio": True}
    assert modalities(mm_server) == {"vision": True, "audio": True}


def test_a_projector_that_does_not_load_fails_the_start(llama_server_binary, tiny_model, tmp_path):
    not_gguf = tmp_path / "projector.gguf"
    not_gguf.write_bytes(b"not a projector")
    for projector in (not_gguf, tmp_path / "missing.gguf"):
        with pytest.raises(ServerStartError, match="failed to load multimodal model"):
            LlamaServer(tiny_model, binary=llama_server_binary, mmproj=projector, extra_args=SERVER_ARGS).start()


# -- the reference examples, and a conversation ------------------------------------------------


def test_the_reference_examples_verbatim_through_an_agent(mm_server, mm_model):
    Agent = strands_agent()  # noqa: N806 - the reference's name
    audio_bytes, image_bytes = tiny_wav(), tiny_png()
    agent = Agent(model=AsyncLlamaCppModel(mm_server.base_url, params=ANSWER), callback_handler=None)
    sent = record_requests(agent.model)
    used = [0]

    def input_tokens(response: Any) -> int:
        """The prompt tokens of the invocation that gave `response` (the usage accumulates)."""
        total = response.metrics.accumulated_usage["inputTokens"]
        used.append(total)
        return total - used[-2]

    audio_content = [{"audio": {"source": {"bytes": audio_bytes}, "format": "wav"}, "text": "What do you hear in this audio?"}]
    response = agent(audio_content)
    assert response.stop_reason == "end_turn"
    assert sent[-1] == [{"role": "user", "content": audio_content}]
    assert input_tokens(response) == text_tokens(mm_model, sent[-1]) + TOKENS_PER_AUDIO_CHUNK

    image_content = [{"image": {"source": {"bytes": image_bytes}, "format": "png"}, "text": "Describe this image"}]
    response = agent(image_content)
    assert response.stop_reason == "end_turn"
    assert len(sent) == 2 and sent[-1][0]["content"] == audio_content and sent[-1][-1]["content"] == image_content
    assert input_tokens(response) == text_tokens(mm_model, sent[-1]) + TOKENS_PER_AUDIO_CHUNK + TOKENS_PER_IMAGE


@pytest.mark.parametrize("path", ["sync", "async"])
def test_the_reference_examples_verbatim_through_the_model(mm_model, path):
    audio_bytes, image_bytes = tiny_wav(), tiny_png()
    audio_content = [{"audio": {"source": {"bytes": audio_bytes}, "format": "wav"}, "text": "What do you hear in this audio?"}]
    image_content = [{"image": {"source": {"bytes": image_bytes}, "format": "png"}, "text": "Describe this image"}]
    for content, growth in ((audio_content, TOKENS_PER_AUDIO_CHUNK), (image_content, TOKENS_PER_IMAGE)):
        messages = [{"role": "user", "content": content}]
        assert PATHS[path](mm_model, messages).input_tokens == text_tokens(mm_model, messages) + growth


class Conversation:
    """One conversation on one path: the history is kept by the test (sync, async) or by the Agent."""

    def __init__(self, model: LlamaCppModel, path: str) -> None:
        self.model, self.path = model, path
        self.sent: list = []  # the messages of the latest request
        self._history: list = []
        if path == "agent":
            self.agent = strands_agent()(model=AsyncLlamaCppModel(model.base_url, params=ANSWER), callback_handler=None)
            self.requests = record_requests(self.agent.model)
            self._used = 0

    def say(self, content: list) -> int:
        """Send one user turn; return its request's prompt tokens."""
        if self.path != "agent":
            self.sent = [*self._history, {"role": "user", "content": content}]
            answer = PATHS[self.path](self.model, self.sent)
            self._history = [*self.sent, {"role": "assistant", "content": [{"text": answer.text}]}]
            return answer.input_tokens
        result = self.agent(content)
        assert result.stop_reason == "end_turn"
        self.sent = self.requests[-1]
        used, self._used = self._used, result.metrics.accumulated_usage["inputTokens"]
        return self._used - used


@pytest.mark.parametrize("path", PATHS)
def test_a_conversation_mixing_text_image_and_audio_turns(mm_model, path):
    """Each request carries the whole history, earlier media included: the growth adds up."""
    chat = Conversation(mm_model, path)
    turns = [[{"text": "Hello there."}],
             [image_block(), {"text": "What is in this picture?"}],
             [{"audio": audio_block()["audio"], "text": "And in this sound?"}],
             [{"text": "Compare them."}],
             [{"text": "Both again:"}, image_block(tiny_png(16, 4)), audio_block(tiny_wav(2.5, 8000))]]
    growth = []
    for content in turns:
        tokens = chat.say(content)
        assert chat.sent[-1]["content"] == content
        growth.append(tokens - text_tokens(mm_model, chat.sent))
        assert growth[-1] == media_tokens(chat.sent)
    assert growth == [0, 16, 16 + 75, 16 + 75, 2 * (16 + 75)]


# -- formats -----------------------------------------------------------------------------------


def test_the_encoders_in_tests_media_cover_every_accepted_format():
    assert set(media.IMAGES) == set(IMAGE_FORMATS)
    assert set(media.AUDIO) == set(AUDIO_FORMATS.values())  # the other audio names are aliases of these


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind,fmt", [("image", fmt) for fmt in sorted(media.IMAGES)]
                         + [("audio", fmt) for fmt in sorted(media.AUDIO)])
def test_every_accepted_format_is_decoded(mm_model, path, kind, fmt):
    data = (media.IMAGES if kind == "image" else media.AUDIO)[fmt]()
    messages = user({kind: {"format": fmt, "source": {"bytes": data}}}, {"text": "What is this?"})
    assert PATHS[path](mm_model, messages).input_tokens == text_tokens(mm_model, messages) + MEDIA_TOKENS[kind]


@pytest.mark.parametrize("kind,data", [
    ("image", b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"),
    ("audio", b"OggS\x00\x02" + bytes(64)),
], ids=["webp", "ogg"])
def test_refused_formats_fail_on_the_server_too(mm_model, kind, data):
    """WebP and Ogg bytes, sent under a name the library accepts, are not decodable by the server."""
    block = {kind: {"format": "png" if kind == "image" else "wav", "source": {"bytes": data}}}
    with pytest.raises(BadRequestError, match="Failed to load image or audio file"):
        mm_model.chat(user(block), max_tokens=1)
    renamed = {kind: {**block[kind], "format": "webp" if kind == "image" else "ogg"}}
    with pytest.raises(InvalidRequestError, match="not decodable by llama-server"):
        mm_model.chat(user(renamed), max_tokens=1)


# -- what the server cannot decode, and models without the modality ----------------------------

UNDECODABLE = {
    "garbage-image": image_block(b"this is not an image at all"),
    "truncated-png": image_block(tiny_png()[:40]),
    "garbage-audio": audio_block(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(32)),
    "empty-wav": audio_block(tiny_wav(0)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", UNDECODABLE)
def test_media_the_server_cannot_decode_give_its_message_and_it_stays_up(mm_model, path, name):
    messages = user(UNDECODABLE[name], {"text": "What is this?"})
    with pytest.raises(BadRequestError) as info:
        PATHS[path](mm_model, messages)
    error = info.value
    assert (error.status_code, error.error_type) == (400, "invalid_request_error")
    assert error.message == "Failed to load image or audio file" and error.message in str(error)
    assert mm_model.health() == {"status": "ok"}
    good = user(image_block(), {"text": "What is this?"})
    assert PATHS[path](mm_model, good).input_tokens == text_tokens(mm_model, good) + TOKENS_PER_IMAGE


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Callable[[str], LlamaServer]:
    """Start a server only when a test asks for it (by fixture name)."""
    return request.getfixturevalue


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("server,blocks,modality", [
    ("real_server", [image_block()], "vision"),
    ("real_server", [audio_block()], "audio"),
    ("vision_only_server", [audio_block()], "audio"),
    ("vision_only_server", [image_block(), audio_block()], "audio"),
    ("audio_only_server", [image_block()], "vision"),
], ids=["text-only-image", "text-only-audio", "vision-only-audio", "vision-only-both", "audio-only-image"])
def test_media_the_model_cannot_take_are_modality_not_supported(servers, path, server, blocks, modality):
    with LlamaCppModel(servers(server).base_url, params=ANSWER) as model:
        with pytest.raises(ModalityNotSupportedError) as info:
            PATHS[path](model, user(*blocks, {"text": "What is this?"}))
        assert info.value.modality == modality and info.value.status_code == 500
        assert f"no {modality} input" in str(info.value) and "--mmproj" in str(info.value)
        assert f"{'image' if modality == 'vision' else 'audio'} input is not supported" in info.value.message
        assert model.health() == {"status": "ok"}


def test_the_modality_the_model_has_still_works_next_to_the_one_it_lacks(vision_only_server):
    with LlamaCppModel(vision_only_server.base_url, params=ANSWER) as model:
        messages = user(image_block(), {"text": "What is this?"})
        assert model.chat(messages).usage["inputTokens"] == text_tokens(model, messages) + TOKENS_PER_IMAGE


# -- system messages ---------------------------------------------------------------------------


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
