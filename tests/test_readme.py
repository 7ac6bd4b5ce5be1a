"""The README's Python examples run, in order, against a real llama-server (so the docs can't rot)."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

pytestmark = pytest.mark.real_server

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_sync_async_and_strands_examples():
    code = "\n".join(python_blocks())
    for needle in ("LlamaCppModel(", "AsyncLlamaCppModel(", "asyncio.run(", "from strands import Agent",
                   "structured_output(", "LlamaServer("):
        assert needle in code, needle


def test_every_python_block_runs(real_server, tiny_model, tiny_mmproj, llama_server_binary, monkeypatch):
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(llama_server_binary))
    namespace: dict = {}
    out = io.StringIO()
    for number, block in enumerate(python_blocks(), 1):
        code = (block.replace("http://localhost:8080", real_server.base_url)
                .replace('"model.gguf"', repr(str(tiny_model))).replace('"mmproj.gguf"', repr(str(tiny_mmproj))))
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md python block {number}", "exec"), namespace)  # noqa: S102 - our own docs
    assert namespace["result"].stop_reason == "end_turn"  # the Strands Agent example's answer
    assert type(namespace["pet"]).__name__ == "Pet"
    assert out.getvalue().strip()
