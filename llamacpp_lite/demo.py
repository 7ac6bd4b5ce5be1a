"""The demo behind `./run.sh demo`: stream from a real llama-server, call a tool, get JSON, send media.

Without a URL it writes the tiny test model and its tiny multimodal projector
(`llamacpp_lite.testing`, needs the `testing` extra), starts a managed llama-server on them, and
stops the server at the end. The tiny model writes gibberish: the demo shows the protocol
(streaming, tool calls, constrained JSON, an image and an audio clip reaching the model), not
meaning. With `--base-url` it talks to your own server instead, and sends media only of the kinds
its `/props` reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import sys
from typing import Any, Iterator, Mapping, Optional, TextIO

from ._errors import ServerStartError
from ._model import LlamaCppModel
from ._result import collect_result
from .server import LlamaServer, describe_binary

__all__ = ["run_demo", "tiny_mmproj_path", "tiny_model_path"]

ADD_TOOL = {
    "name": "add",
    "description": "Add two integers.",
    "inputSchema": {"json": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                             "required": ["a", "b"]}},
}


@dataclasses.dataclass
class Pet:
    """The structured-output example: bounded fields keep a small model's JSON short."""

    name: str = dataclasses.field(metadata={"json_schema": {"maxLength": 12}})
    age: int = dataclasses.field(metadata={"json_schema": {"minimum": 0, "maximum": 30}})
    kind: str = dataclasses.field(metadata={"json_schema": {"enum": ["cat", "dog", "fish"]}})


def _cache() -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("LLAMACPP_LITE_CACHE") or pathlib.Path.home() / ".cache" / "llamacpp-lite")
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def tiny_model_path() -> pathlib.Path:
    """Write (once) and return the tiny demo model in the user's cache folder."""
    from .testing.tiny_model import write_tiny_model

    return write_tiny_model(_cache() / "tiny-chat.gguf", variant="chat")


def tiny_mmproj_path() -> pathlib.Path:
    """Write (once) and return the tiny demo model's projector (image and audio input) in the cache folder."""
    from .testing.tiny_mmproj import write_tiny_mmproj

    return write_tiny_mmproj(_cache() / "tiny-mmproj.gguf")


@contextlib.contextmanager
def _server_url(base_url: Optional[str], out: TextIO) -> Iterator[str]:
    if base_url:
        yield base_url
        return
    with LlamaServer(tiny_model_path(), mmproj=tiny_mmproj_path(), extra_args=["-t", "2", "--no-webui"]) as server:
        print(f"started llama-server (pid {server.pid}) on {server.base_url} with the tiny model and projector",
              file=out)
        print(f"binary: {describe_binary(server.binary)}", file=out)
        if server.base_url is None:  # pragma: no cover - set by start(), which __enter__ ran
            raise ServerStartError("the managed llama-server has no URL")
        yield server.base_url
    print("stopped llama-server", file=out)


def run_demo(
    base_url: Optional[str] = None,
    out: TextIO = sys.stdout,
    *,
    api_key: Optional[str] = None,
    timeout: Any = (5, 120),
) -> None:
    """Run the demo against `base_url`, or against a managed server on the tiny model."""
    with _server_url(base_url, out) as url, LlamaCppModel(url, timeout=timeout, api_key=api_key) as model:
        props = model.props()
        print(f"server build {props.build_info}, context {props.n_ctx} tokens per slot, {props.total_slots} slots",
              file=out)

        print("\n1. streaming a reply (Strands events; the text printed as it arrives):", file=out)
        print("   ", end="", file=out)
        events = []
        for event in model.stream("Tell me a story.", max_tokens=48, seed=1):
            events.append(event)
            delta = event.get("contentBlockDelta", {}).get("delta", {})
            if "text" in delta:
                print(delta["text"], end="", file=out, flush=True)
        result = collect_result(events)
        print(f"\n   stop reason {result.stop_reason}; {result.usage['inputTokens']} prompt + "
              f"{result.usage['outputTokens']} generated tokens; "
              f"{result.timings.get('predicted_per_second', 0):.0f} tokens/s", file=out)

        print("\n2. a tool call, then the tool's result sent back:", file=out)
        messages = [{"role": "user", "content": [{"text": "What is 2 + 3?"}]}]
        call = model.chat(messages, [ADD_TOOL], max_tokens=200, seed=1)
        for use in call.tool_uses:
            print(f"   model called {use.name}({use.raw_input.strip()}) -> stop reason {call.stop_reason}", file=out)
        if call.tool_uses:
            use = call.tool_uses[0]
            value = sum(v for v in (use.input or {}).values() if isinstance(v, int))
            messages += [
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": use.tool_use_id, "name": use.name,
                                                               "input": use.input}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": use.tool_use_id, "status": "success",
                                                             "content": [{"text": str(value)}]}}]},
            ]
            answer = model.chat(messages, [ADD_TOOL], max_tokens=200, seed=1)
            print(f"   answer after the tool result: {answer.text!r} (stop reason {answer.stop_reason})", file=out)

        print("\n3. structured output into a dataclass (JSON Schema enforced by the server):", file=out)
        *_, last = model.structured_output(Pet, "Describe a pet.", max_tokens=200, seed=1)
        print(f"   {last['output']!r}", file=out)

        print("\n4. an image and an audio clip (each becomes prompt tokens: the growth shows it arrived):", file=out)
        _media_turns(model, props.modalities, out)


def _media_turns(model: LlamaCppModel, modalities: Mapping[str, bool], out: TextIO) -> None:
    """Send one image turn and one audio turn, each next to the same question without the media."""
    from .testing.media import tiny_png, tiny_wav  # standard library only (no testing extra needed)

    turns = (
        ("image", "vision", "an 8x8 PNG", {"image": {"format": "png", "source": {"bytes": tiny_png()}}},
         "Describe this image"),
        ("audio", "audio", "1 s of WAV", {"audio": {"format": "wav", "source": {"bytes": tiny_wav()}}},
         "What do you hear in this audio?"),
    )
    for kind, modality, what, media, question in turns:
        if not modalities.get(modality):
            print(f"   {kind}: skipped, the server reports no {modality} input (start it with --mmproj)", file=out)
            continue
        answer = model.chat([{"role": "user", "content": [{**media, "text": question}]}], max_tokens=16, seed=1)
        plain = model.chat([{"role": "user", "content": [{"text": question}]}], max_tokens=1)
        growth = answer.usage["inputTokens"] - plain.usage["inputTokens"]
        print(f"   {kind}: {growth:+d} prompt tokens ({what}: {answer.usage['inputTokens']} with it, "
              f"{plain.usage['inputTokens']} without); answer to {question!r}: {answer.text!r}", file=out)
