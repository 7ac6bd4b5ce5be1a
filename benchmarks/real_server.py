"""Optional section: whether each client keeps up with a real llama-server.

Starts the given binary on 127.0.0.1 with the given GGUF model (through `llamacpp_lite.server.
LlamaServer`, which stops it by PID on exit), then, for each driver in its own process, reads one
``ignore_eos`` stream and compares the client's delivery rate (text deltas per second between the
first and the last) with the server's own ``timings.predicted_per_second`` for the same request,
as the client exposes it (the floors and requests+sseclient read it off the wire, llamacpp_lite
from its ``metadata`` event, openai from the chunk's extra fields; Strands does not expose it).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run"]

SERVER_ARGS = ("-np", "1", "-c", "2048", "-t", "2", "--no-webui")
"""One slot, so each stream runs alone; the context of the project's tiny test model."""


def run(
    binary: Path,
    model: Path,
    tokens: int,
    drivers: list[str],
    child: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Measure every driver against a real llama-server.

    Args:
        binary: The llama-server binary.
        model: A GGUF model file.
        tokens: ``max_tokens`` per stream (with ``ignore_eos``; capped by the context).
        drivers: Driver names, in order.
        child: Runs one scenario spec in a fresh process and returns its result.

    Returns:
        ``{"server": description, "drivers": {name: result}}``, plus ``"error"`` if the server
        could not be started.
    """
    from llamacpp_lite import LlamaCppError
    from llamacpp_lite.server import LlamaServer

    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False, timeout=30)
    lines = [line for line in (version.stdout + version.stderr).splitlines() if line.startswith("version:")]
    name = lines[0].removeprefix("version:").strip() if lines else binary.name
    description = f"llama-server `{name}` ({' '.join(SERVER_ARGS)}), model `{model.name}`"
    results = {}
    try:
        with LlamaServer(model, binary=binary, extra_args=SERVER_ARGS) as server:
            for name in drivers:
                spec = {"driver": name, "scenario": "rate", "url": server.base_url, "n": tokens}
                results[name] = child({**spec, "extra": {"ignore_eos": True}})
    except LlamaCppError as exc:
        return {"server": description, "error": str(exc), "drivers": results}
    return {"server": description, "drivers": results}
