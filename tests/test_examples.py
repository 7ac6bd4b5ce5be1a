"""The scripts in examples/, each run as a subprocess against the real test server, so they cannot rot.

The tiny model writes gibberish: the checks are on the structure of what the scripts print.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.real_server

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run one example with a clean environment plus `env`; fail on a non-zero exit."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LLAMACPP_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.update(env)
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                            env=environ, stdin=subprocess.DEVNULL, timeout=180, cwd=ROOT)
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def test_every_example_is_tested():
    tested = {"stream_sync.py", "structured_output.py", "tool_calls.py", "async_streams.py", "strands_agent.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("how", ["argv", "environment"])
def test_stream_sync(real_server, how):
    args, env = ((real_server.base_url,), {}) if how == "argv" else ((), {"LLAMACPP_BASE_URL": real_server.base_url})
    out = run_example("stream_sync.py", *args, **env).stdout
    assert re.search(r"\n\nstop reason: (end_turn|max_tokens)\ntokens: \d+ in, \d+ out, [\d.]+ tokens/s\n$", out)


def test_structured_output(real_server):
    out = run_example("structured_output.py", real_server.base_url).stdout
    assert re.match(r"Pet\(name=.*, age=\d+, kind='(cat|dog|fish)'\)\n.* is a \d+-year-old (cat|dog|fish)\n$", out,
                    re.S)


def test_tool_calls_runs_the_tool_and_sends_the_result_back(real_server):
    out = run_example("tool_calls.py", real_server.base_url).stdout
    calls = re.findall(r"^tool call: add\((\{.*\})\) -> success: \{'json': \{'result': -?\d+\}\}$", out, re.M)
    assert len(calls) >= 1
    assert re.search(r"^answer: .* \(stop reason end_turn\)$", out, re.M)


def test_async_streams_run_concurrently(real_server):
    out = run_example("async_streams.py", real_server.base_url).stdout
    assert sorted(re.findall(r"^stream (\d): first token after [\d.]+ s$", out, re.M)) == ["1", "2", "3", "4"]
    assert re.findall(r"^stream (\d): ['\"]", out, re.M) == ["1", "2", "3", "4"]


def test_strands_agent_calls_the_tool_then_answers(real_server):
    pytest.importorskip("strands")
    out = run_example("strands_agent.py", real_server.base_url).stdout
    assert re.search(r"^\[tool\] add\(-?\d+, -?\d+\)$", out, re.M)
    assert "[agent] stop reason: end_turn" in out
    assert re.search(r"^\[agent\] messages in the conversation: 4$", out, re.M)
