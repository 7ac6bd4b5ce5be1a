"""The test-data writers of `llamacpp_lite.testing`: deterministic files that a real llama-server loads.

The unit part checks bytes, sizes and metadata; the real-server part proves each file loads and
behaves as documented (the feature tests that use them live elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pathlib
import struct
import wave
from typing import Any, Callable

import gguf
import pytest
import requests

import llamacpp_lite.testing as testing
from llamacpp_lite.server import LlamaServer
from llamacpp_lite.testing import (
    AUDIO_CHUNK_SECONDS,
    FIM_TOKENS,
    TOKENS_PER_AUDIO_CHUNK,
    TOKENS_PER_IMAGE,
    tiny_png,
    tiny_wav,
    write_tiny_lora,
    write_tiny_mmproj,
    write_tiny_model,
)

# sha256 of the files the ORIGINAL generator wrote (main at baebf2b, before FIM, bad_tool_call and
# the other writers existed; gguf 0.19.0, numpy 2.4.6), obtained with
#   python -c "from llamacpp_lite.testing.tiny_model import write_tiny_model as w; import hashlib; \
#              print(hashlib.sha256(w('/tmp/m.gguf', 'chat').read_bytes()).hexdigest())"
# About 400 tests depend on the exact behaviour of these two files: their bytes must not change.
ORIGINAL_SHA256 = {
    "chat": "83108b0f0f70dde49dbcaac714673c6ff2675100febf6baeada19f828f8e8900",
    "reasoning": "96f63715a838ff97dcf0ce1867727d69d9d843ae1984a560bacb6dc6528acfae",
}

WRITERS: dict[str, Callable[[pathlib.Path], pathlib.Path]] = {
    "chat": lambda path: write_tiny_model(path, "chat"),
    "reasoning": lambda path: write_tiny_model(path, "reasoning"),
    "bad_tool_call": lambda path: write_tiny_model(path, "bad_tool_call"),
    "chat-fim": lambda path: write_tiny_model(path, "chat", fim=True),
    "mmproj": lambda path: write_tiny_mmproj(path),
    "mmproj-vision": lambda path: write_tiny_mmproj(path, audio=False),
    "mmproj-audio": lambda path: write_tiny_mmproj(path, vision=False),
    "lora": lambda path: write_tiny_lora(path),
    "lora-r8-s2": lambda path: write_tiny_lora(path, rank=8, alpha=4.0, seed=2),
}
MAX_BYTES = {"mmproj": 1_000_000, "lora": 16_000}


def _fields(path: pathlib.Path) -> dict[str, Any]:
    """The GGUF key/values of a file, decoded."""
    return {name: field.contents() for name, field in gguf.GGUFReader(path).fields.items()}


def _tensors(path: pathlib.Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> ggml `ne` shape."""
    return {t.name: tuple(int(n) for n in t.shape) for t in gguf.GGUFReader(path).tensors}


# -- unit: bytes, sizes, metadata ------------------------------------------------------------


def test_the_package_exports_its_writers():
    assert testing.__all__ == sorted(testing.__all__)
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    assert (TOKENS_PER_IMAGE, TOKENS_PER_AUDIO_CHUNK, AUDIO_CHUNK_SECONDS) == (16, 75, 30)


@pytest.mark.parametrize("variant", sorted(ORIGINAL_SHA256))
def test_the_default_variants_are_byte_for_byte_the_original_ones(tmp_path, variant):
    written = write_tiny_model(tmp_path / "m.gguf", variant)
    assert hashlib.sha256(written.read_bytes()).hexdigest() == ORIGINAL_SHA256[variant]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_writer_is_deterministic_and_small(tmp_path, name):
    first = WRITERS[name](tmp_path / "a.gguf")
    second = WRITERS[name](tmp_path / "b.gguf")
    assert isinstance(first, pathlib.Path) and first == tmp_path / "a.gguf"
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[:4] == b"GGUF"
    assert first.stat().st_size < MAX_BYTES.get(name.split("-")[0], 1_000_000)


def test_variants_and_seeds_give_different_files(tmp_path):
    assert (write_tiny_model(tmp_path / "a", "bad_tool_call").read_bytes()
            != write_tiny_model(tmp_path / "b", "chat").read_bytes())
    assert write_tiny_lora(tmp_path / "c", seed=1).read_bytes() != write_tiny_lora(tmp_path / "d", seed=2).read_bytes()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown variant"):
        write_tiny_model(tmp_path / "m.gguf", "nope")
    with pytest.raises(ValueError, match="at least one encoder"):
        write_tiny_mmproj(tmp_path / "p.gguf", vision=False, audio=False)
    with pytest.raises(ValueError, match="rank"):
        write_tiny_lora(tmp_path / "l.gguf", rank=0)
    with pytest.raises(ValueError, match="alpha"):
        write_tiny_lora(tmp_path / "l.gguf", alpha=0.0)
    assert not list(tmp_path.iterdir())


def test_the_fim_model_names_its_fim_tokens(tmp_path):
    fields = _fields(write_tiny_model(tmp_path / "m.gguf", fim=True))
    tokens = fields["tokenizer.ggml.tokens"]
    for text, key in FIM_TOKENS:
        assert tokens[fields[key]] == text
    plain = _fields(write_tiny_model(tmp_path / "p.gguf"))
    assert not any(key.startswith("tokenizer.ggml.fim_") for key in plain)
    assert tokens[: len(plain["tokenizer.ggml.tokens"])] == plain["tokenizer.ggml.tokens"]


def test_the_projector_has_one_projector_type_per_modality(tmp_path):
    fields = _fields(write_tiny_mmproj(tmp_path / "p.gguf"))
    assert fields["general.architecture"] == "clip"
    assert fields["clip.vision.projector_type"] == "mlp"
    assert fields["clip.audio.projector_type"] == "ultravox"
    assert "clip.projector_type" not in fields  # it would override both
    assert fields["clip.audio.projector.stack_factor"] == 20 and 1500 % 20 == 0
    assert fields["clip.vision.projection_dim"] == fields["clip.audio.projection_dim"] == 64
    vision_only = _fields(write_tiny_mmproj(tmp_path / "v.gguf", audio=False))
    assert vision_only["clip.has_audio_encoder"] is False and "clip.audio.projector_type" not in vision_only
    assert not any(name.startswith("a.") for name in _tensors(tmp_path / "v.gguf"))


def test_the_lora_adapter_matches_the_tiny_model(tmp_path):
    lora = write_tiny_lora(tmp_path / "l.gguf", rank=4, alpha=8.0)
    fields = _fields(lora)
    assert (fields["general.type"], fields["general.architecture"], fields["adapter.type"]) == ("adapter", "llama", "lora")
    assert fields["adapter.lora.alpha"] == 8.0
    model = _tensors(write_tiny_model(tmp_path / "m.gguf"))
    n_embd, n_vocab = model["output.weight"]
    assert _tensors(lora) == {"output.weight.lora_a": (n_embd, 4), "output.weight.lora_b": (4, n_vocab)}
    fim_vocab = _tensors(write_tiny_model(tmp_path / "f.gguf", fim=True))["output.weight"][1]
    assert _tensors(write_tiny_lora(tmp_path / "lf.gguf", fim=True))["output.weight.lora_b"] == (4, fim_vocab)


def test_the_media_helpers_write_valid_files():
    png = tiny_png(5, 3)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and struct.unpack(">II", png[16:24]) == (5, 3)
    with wave.open(io.BytesIO(tiny_wav(1.5, 8000))) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (1, 8000, 12000)
    with pytest.raises(ValueError):
        tiny_png(0, 1)
    with pytest.raises(ValueError):
        tiny_wav(-1.0)


# -- real llama-server: the files load and behave as documented ------------------------------

TIMEOUT = 60
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"]}}}]


def _post(server: LlamaServer, path: str, body: Any) -> requests.Response:
    return requests.post(f"{server.base_url}{path}", json=body, timeout=TIMEOUT)


def _chat(server: LlamaServer, content: Any, **fields: Any) -> dict[str, Any]:
    response = _post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": content}], **fields})
    assert response.status_code == 200, response.text
    return response.json()


def _prompt_tokens(server: LlamaServer, *media: dict[str, Any]) -> int:
    body = _chat(server, [{"type": "text", "text": "Describe this."}, *media], max_tokens=2, temperature=0)
    return int(body["usage"]["prompt_tokens"])


def _image(png: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}


def _audio(wav: bytes) -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}


@pytest.mark.real_server
def test_the_projector_adds_the_documented_tokens_per_image_and_audio_chunk(mm_server):
    props = requests.get(mm_server.base_url + "/props", timeout=TIMEOUT).json()
    assert props["modalities"] == {"vision": True, "video": True, "audio": True}
    text_only = _prompt_tokens(mm_server)
    assert _prompt_tokens(mm_server, _image(tiny_png(200, 20))) == text_only + TOKENS_PER_IMAGE
    assert _prompt_tokens(mm_server, _image(tiny_png()), _image(tiny_png(1, 1))) == text_only + 2 * TOKENS_PER_IMAGE
    assert _prompt_tokens(mm_server, _audio(tiny_wav(1.0))) == text_only + TOKENS_PER_AUDIO_CHUNK
    assert _prompt_tokens(mm_server, _audio(tiny_wav(AUDIO_CHUNK_SECONDS + 1.0, 8000))) == (
        text_only + 2 * TOKENS_PER_AUDIO_CHUNK)


@pytest.mark.real_server
def test_infill_works_on_the_fim_model_only(fim_server, real_server):
    request = {"input_prefix": "def add(a, b):\n    ", "input_suffix": "\n    return c\n", "temperature": 0}
    plain = _post(real_server, "/infill", request)
    assert plain.status_code == 501 and "Infill is not supported" in plain.json()["error"]["message"]
    answer = _post(fim_server, "/infill", request)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stop_type"] == "eos" and answer.json()["content"].strip()
    extra = _post(fim_server, "/infill", {**request, "input_extra": [{"filename": "util.py", "text": "x = 1\n"}]})
    assert extra.status_code == 200 and extra.json()["tokens_evaluated"] > answer.json()["tokens_evaluated"]
    with requests.post(fim_server.base_url + "/infill", json={**request, "stream": True}, stream=True,
                       timeout=TIMEOUT) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        events = [json.loads(line[len(b"data: "):]) for line in stream.iter_lines() if line.startswith(b"data: ")]
    assert events[-1]["stop"] is True and "".join(e["content"] for e in events) == answer.json()["content"]


@pytest.mark.real_server
def test_the_fim_model_chats_like_the_plain_model(fim_server, real_server):
    request = {"max_tokens": 60, "temperature": 0}
    assert (_chat(fim_server, "hello there", **request)["choices"][0]["message"]
            == _chat(real_server, "hello there", **request)["choices"][0]["message"])


@pytest.mark.real_server
def test_the_lora_adapter_changes_the_greedy_text_and_keeps_it_well_formed(lora_server):
    adapters = requests.get(lora_server.base_url + "/lora-adapters", timeout=TIMEOUT).json()
    assert [(a["id"], a["scale"], pathlib.Path(a["path"]).name) for a in adapters] == [(0, 1.0, "tiny-lora.gguf")]
    answers = {}
    for scale in (0.0, 1.0):
        choice = _chat(lora_server, "hello there", max_tokens=100, temperature=0,
                       lora=[{"id": 0, "scale": scale}])["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["content"].strip()
        answers[scale] = choice["message"]["content"]
    assert answers[0.0] != answers[1.0]
    try:
        assert _post(lora_server, "/lora-adapters", [{"id": 0, "scale": 0.0}]).json() == {"success": True}
        assert requests.get(lora_server.base_url + "/lora-adapters", timeout=TIMEOUT).json()[0]["scale"] == 0.0
        unscaled = _chat(lora_server, "hello there", max_tokens=100, temperature=0)["choices"][0]["message"]
        assert unscaled["content"] == answers[0.0]
    finally:
        _post(lora_server, "/lora-adapters", [{"id": 0, "scale": 1.0}])


@pytest.mark.real_server
def test_the_bad_tool_call_model_makes_the_server_fail_to_parse_its_call(bad_tool_call_server):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    plain = _chat(bad_tool_call_server, "hello", max_tokens=60)
    assert plain["choices"][0]["finish_reason"] == "stop"
    response = _post(bad_tool_call_server, "/v1/chat/completions",
                     {"messages": messages, "tools": WEATHER, "max_tokens": 100})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": 500, "type": "server_error",
        "message": "The model produced output that does not match the expected peg-native format"}
    with requests.post(bad_tool_call_server.base_url + "/v1/chat/completions", stream=True, timeout=TIMEOUT,
                       json={"messages": messages, "tools": WEATHER, "max_tokens": 100, "stream": True}) as stream:
        assert stream.status_code == 200
        lines = [line for line in stream.iter_lines() if line]
    assert json.loads(lines[-1][len(b"data: "):])["error"]["type"] == "server_error"
    assert b"data: [DONE]" not in lines
