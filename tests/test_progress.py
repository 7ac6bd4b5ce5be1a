"""Prompt-processing progress: `return_progress=True` -> `promptProgress` events, `ChatResult.prompt_progress`,
a Strands Agent and its callback handler, and the command line's progress bar.

The chunk shapes are b11434's (`/work/notes/server-facts.md` section 2): each progress event is a
whole chunk with the role delta and a top-level `prompt_progress` object, one when the slot
starts and one per batch until `processed == total`.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess

import pytest

import llamacpp_lite as lite
from llamacpp_lite import LlamaCppModel
from llamacpp_lite._events import translate_chunks
from llamacpp_lite._result import collect_result
from llamacpp_lite.cli._chat import _ProgressBar
from tests import fault_server as fs
from tests.test_cli import ROOT, cli_env, command, run

ROLE = {"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}]}


def progress_chunk(processed, total=1254, cache=0, time_ms=0):
    return {**ROLE, "prompt_progress": {"total": total, "cache": cache, "processed": processed, "time_ms": time_ms}}


def answer_chunks(*pieces):
    return [ROLE, *fs.text_chunks(*pieces)[1:]]


def long_prompt(tag: str, words: int = 150) -> str:
    """About 4 tokens a word on the tiny model; `tag` first, so that no earlier prompt is a cached prefix."""
    return f"{tag}: " + " ".join(f"w{i}" for i in range(words))


# -- translation (pure) --------------------------------------------------------------------------


def test_progress_chunks_become_events_before_the_first_block():
    chunks = [progress_chunk(0), progress_chunk(128, time_ms=31), progress_chunk(1254, time_ms=62.5),
              *answer_chunks("8")]
    events = list(translate_chunks(chunks, started=0.0, clock=lambda: 0.0))
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert events[1:4] == [
        {"promptProgress": {"processed": 0, "total": 1254, "cached": 0, "timeMs": 0.0}},
        {"promptProgress": {"processed": 128, "total": 1254, "cached": 0, "timeMs": 31.0}},
        {"promptProgress": {"processed": 1254, "total": 1254, "cached": 0, "timeMs": 62.5}},
    ]
    assert events[4] == {"contentBlockStart": {"start": {}}}
    assert collect_result(events).prompt_progress == {"processed": 1254, "total": 1254, "cached": 0, "timeMs": 62.5}


def test_without_progress_chunks_there_are_no_progress_events():
    events = list(translate_chunks(answer_chunks("a", "b"), started=0.0, clock=lambda: 0.0))
    assert not [e for e in events if "promptProgress" in e]
    assert collect_result(events).prompt_progress is None


@pytest.mark.parametrize("bad", [{"total": "1", "cache": 0, "processed": 0, "time_ms": 0},
                                 {"total": 1, "cache": 0, "processed": None, "time_ms": 0},
                                 {"total": 1, "cache": 0, "processed": 0, "time_ms": "0"}])
def test_a_malformed_progress_object_is_a_stream_error(bad):
    with pytest.raises(lite.StreamError, match="prompt_progress"):
        list(translate_chunks([{**ROLE, "prompt_progress": bad}], started=0.0))


# -- a real llama-server -------------------------------------------------------------------------


@pytest.mark.real_server
def test_real_server_reports_progress_per_batch(small_batch_server):
    with LlamaCppModel(small_batch_server.base_url, timeout=(5, 60)) as model:
        events = list(model.stream(long_prompt("alpha"), return_progress=True, max_tokens=4))
        plain = list(model.stream(long_prompt("beta"), max_tokens=4))
    kinds = [next(iter(e)) for e in events]
    progress = [e["promptProgress"] for e in events if "promptProgress" in e]
    assert kinds[0] == "messageStart" and kinds[1:1 + len(progress)] == ["promptProgress"] * len(progress)
    assert kinds[1 + len(progress)] in ("contentBlockStart", "messageStop")  # before any content block
    total = progress[-1]["total"]
    assert total > 400 and len(progress) >= total // 64  # one event per batch of 64 (-b 64), plus the first
    assert progress[-1]["processed"] == total and all(p["total"] == total for p in progress)
    for earlier, later in zip(progress, progress[1:]):  # values only grow
        assert later["processed"] > earlier["processed"] and later["timeMs"] >= earlier["timeMs"]
    assert not [e for e in plain if "promptProgress" in e]


@pytest.mark.real_server
def test_real_server_chat_result_has_the_last_progress_and_the_cache(small_batch_server):
    prompt = long_prompt("gamma")
    with LlamaCppModel(small_batch_server.base_url, timeout=(5, 60)) as model:
        first = model.chat(prompt, return_progress=True, max_tokens=4).prompt_progress
        again = model.chat(prompt, return_progress=True, max_tokens=4).prompt_progress
        assert model.chat(prompt, max_tokens=4).prompt_progress is None
    assert first["processed"] == first["total"] and first["cached"] < 64
    assert again["total"] == first["total"] and again["cached"] >= first["total"] - 2  # the prompt cache


@pytest.mark.real_server
def test_a_strands_agent_runs_with_progress_and_its_callback_handler_sees_it(small_batch_server):
    strands = pytest.importorskip("strands")
    from llamacpp_lite import AsyncLlamaCppModel

    seen = []
    model = AsyncLlamaCppModel(small_batch_server.base_url, params={"return_progress": True, "max_tokens": 20})
    agent = strands.Agent(model=model, callback_handler=lambda **kwargs: seen.append(kwargs), system_prompt=None)
    result = agent(long_prompt("delta"))
    progress = [kw["event"]["promptProgress"] for kw in seen if "promptProgress" in kw.get("event", {})]
    assert result.stop_reason in ("end_turn", "max_tokens") and agent.messages[-1]["role"] == "assistant"
    assert len(progress) >= 5 and progress[-1]["processed"] == progress[-1]["total"]
    assert not any("promptProgress" in block for message in agent.messages for block in message["content"])


@pytest.mark.real_server
def test_async_model_streams_progress_too(small_batch_server):
    from llamacpp_lite import AsyncLlamaCppModel

    async def run():
        model = AsyncLlamaCppModel(small_batch_server.base_url)
        try:
            return await model.chat(long_prompt("epsilon"), return_progress=True, max_tokens=4)
        finally:
            await model.aclose()

    progress = asyncio.run(run()).prompt_progress
    assert progress is not None and progress["processed"] == progress["total"]


# -- the command line's progress bar -------------------------------------------------------------


class FakeTerminal:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_the_bar_is_drawn_per_event_and_erased():
    terminal = FakeTerminal()
    bar = _ProgressBar(terminal, min_tokens=500)
    bar.update({"processed": 100, "total": 700, "cached": 100, "timeMs": 0.0})
    bar.update({"processed": 400, "total": 700, "cached": 100, "timeMs": 1500.0})
    bar.erase()
    assert terminal.text == ("\rprompt [..............................]   0% 100/700 tokens, 0.0 s\x1b[K"
                             "\rprompt [###############...............]  50% 400/700 tokens, 1.5 s\x1b[K"
                             "\r\x1b[K")
    short = FakeTerminal()
    small = _ProgressBar(short, min_tokens=500)
    small.update({"processed": 0, "total": 900, "cached": 500, "timeMs": 0.0})  # 400 uncached: no bar
    small.erase()
    assert short.text == ""


def run_on_terminal(*args, timeout=60):
    """Run the command with stderr on a pseudo-terminal; return (status, stdout, what the terminal showed)."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL,
                          env=cli_env(), cwd=ROOT) as process:
        os.close(terminal)
        shown = b""
        try:
            while select.select([controller], [], [], timeout)[0]:
                data = os.read(controller, 4096)
                if not data:
                    break
                shown += data
        except OSError:  # EIO: the command ended and closed the terminal
            pass
        finally:
            os.close(controller)
        stdout = process.stdout.read()
        process.wait(timeout)
    return process.returncode, stdout.decode(), shown.decode()


@pytest.mark.real_server
def test_the_command_shows_a_progress_bar_on_a_terminal(small_batch_server):
    status, stdout, shown = run_on_terminal("chat", "--base-url", small_batch_server.base_url, "--max-tokens", "4",
                                            long_prompt("zeta"))
    assert status == 0 and stdout.strip()
    bars = [line for line in shown.split("\r") if line.startswith("prompt [")]
    assert len(bars) >= 3 and bars[-1].startswith("prompt [" + "#" * 30 + "] 100%")
    assert "\r\x1b[K" in shown and "tokens/s, stop:" in shown  # erased, then the statistics line
    assert shown.index("\r\x1b[K") < shown.index("tokens/s")


def test_no_progress_is_asked_on_a_pipe_or_with_no_progress():
    server = fs.FaultServer()
    server.default = fs.text_stream("ok")
    try:
        assert run("chat", "--base-url", server.url, "hi").returncode == 0  # stderr is a pipe
        status, _, shown = run_on_terminal("chat", "--base-url", server.url, "--no-progress", "hi")
        assert status == 0 and "prompt [" not in shown
        status, _, _ = run_on_terminal("chat", "--base-url", server.url, "hi")
        assert status == 0
    finally:
        server.stop()
    asked = ["return_progress" in request.json() for request in server.requests]
    assert asked == [False, False, True]
