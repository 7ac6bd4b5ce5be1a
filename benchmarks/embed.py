"""The cost of `embed()`: ``python -m benchmarks embed [--rounds N] [--inputs N]``.

Against a real llama-server started with ``--embeddings --pooling mean`` on the tiny test model
(written to a temporary folder unless ``--model`` is given), one client process measures, per
round and in rotated order:

* ``embed()``: ``LlamaCppModel.embed(inputs)`` (base64 vectors, several requests when many);
* ``raw JSON``: one ``requests.post`` to ``/v1/embeddings`` with every input and the default
  float answer, decoded with ``.json()`` and the vectors taken in index order;
* ``raw base64``: the same with ``encoding_format: base64``, decoded with ``array``: the floor
  of what ``embed()`` does.

Each measurement is the best of ``--repeats`` calls (wall time and the client's CPU time); the
report gives the medians over rounds and each variant's ratio to ``raw JSON`` in the same round.
The server's work (the same in every variant) dominates the wall time: the client CPU column is
the client's own cost. The report goes to stdout and to ``benchmarks/results-embed.md``.
"""

from __future__ import annotations

import argparse
import array
import base64
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import requests

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "benchmarks" / "results-embed.md"
SERVER_ARGS = ("-c", "2048", "-t", "1", "--embeddings", "--pooling", "mean")


def _raw_json(session: requests.Session, url: str, inputs: list[str]) -> list[list[float]]:
    answer = session.post(url + "/v1/embeddings", json={"input": inputs}, timeout=300).json()
    return [item["embedding"] for item in sorted(answer["data"], key=lambda item: item["index"])]


def _raw_base64(session: requests.Session, url: str, inputs: list[str]) -> list[list[float]]:
    answer = session.post(url + "/v1/embeddings", json={"input": inputs, "encoding_format": "base64"},
                          timeout=300).json()
    items = sorted(answer["data"], key=lambda item: item["index"])
    return [array.array("f", base64.b64decode(item["embedding"])).tolist() for item in items]


def _best(call: Callable[[], list[list[float]]], repeats: int, count: int) -> dict[str, float]:
    """The least wall and CPU seconds of `repeats` calls (each checked to give `count` vectors)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        vectors = call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if len(vectors) != count:
            raise RuntimeError(f"{len(vectors)} vectors for {count} inputs")
    return {"wall_ms": min(walls) * 1000, "cpu_ms": min(cpus) * 1000}


def measure(url: str, inputs: list[str], rounds: int, repeats: int) -> list[dict[str, dict[str, float]]]:
    """Run the rounds against the server at `url`; return one `{variant: figures}` per round."""
    from llamacpp_lite import LlamaCppModel

    session = requests.Session()
    model = LlamaCppModel(url, timeout=(10, 300))
    variants: dict[str, Callable[[], list[list[float]]]] = {
        "embed()": lambda: model.embed(inputs).vectors,
        "raw JSON": lambda: _raw_json(session, url, inputs),
        "raw base64": lambda: _raw_base64(session, url, inputs),
    }
    same = [model.embed(inputs).vectors, _raw_json(session, url, inputs), _raw_base64(session, url, inputs)]
    if not all(max(abs(x - y) for x, y in zip(a, b)) < 1e-6 for vectors in same[1:] for a, b in zip(same[0], vectors)):
        raise RuntimeError("the variants do not give the same vectors")
    names = list(variants)
    results = []
    for number in range(rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        results.append({name: _best(variants[name], repeats, len(inputs)) for name in order})
        print(f"round {number + 1}/{rounds}", file=sys.stderr, flush=True)
    model.close()
    session.close()
    return results


def render(results: list[dict[str, dict[str, float]]], *, inputs: int, repeats: int, server: str,
           command: str) -> str:
    """The Markdown report of `measure`'s results."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        "# `embed()` against one raw request",
        "",
        f"Command: `{command}` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: nproc {os.cpu_count()}, {platform.platform()}, CPython {platform.python_version()}; "
        f"load average {load} at the end (shared machine: compare ratios within a round).",
        "",
        f"Server: {server}. {inputs:,} short inputs (`text number N`), {len(results)} rounds, variant order "
        f"rotated per round; each figure is the best of {repeats} calls; medians over rounds, and the median "
        "of each round's ratio to `raw JSON`.",
        "",
        "| variant | wall ms | × raw JSON | client CPU ms | × raw JSON |",
        "|---|---|---|---|---|",
    ]
    for name in results[0]:
        wall = statistics.median(r[name]["wall_ms"] for r in results)
        cpu = statistics.median(r[name]["cpu_ms"] for r in results)
        wall_ratio = statistics.median(r[name]["wall_ms"] / r["raw JSON"]["wall_ms"] for r in results)
        cpu_ratio = statistics.median(r[name]["cpu_ms"] / r["raw JSON"]["cpu_ms"] for r in results)
        lines.append(f"| {name} | {wall:.1f} | {wall_ratio:.2f}× | {cpu:.1f} | {cpu_ratio:.2f}× |")
    lines += ["", "Per round (wall ms / client CPU ms):", ""]
    for number, result in enumerate(results, 1):
        cells = ", ".join(f"{name} {figures['wall_ms']:.1f} / {figures['cpu_ms']:.1f}"
                          for name, figures in sorted(result.items()))
        lines.append(f"* round {number}: {cells}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Start the server, measure, write the report; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="calls per variant and round; the best is kept")
    parser.add_argument("--inputs", type=int, default=1000, help="inputs per call (default 1000)")
    parser.add_argument("--real-server-bin", type=Path, help="the llama-server binary (default: as LlamaServer finds it)")
    parser.add_argument("--model", type=Path, help="a GGUF model (default: the tiny test model)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the Markdown report")
    args = parser.parse_args(argv)
    from llamacpp_lite.server import LlamaServer

    inputs = [f"text number {n}" for n in range(args.inputs)]
    with tempfile.TemporaryDirectory() as folder:
        model = args.model
        if model is None:
            from llamacpp_lite.testing import write_tiny_model

            model = write_tiny_model(Path(folder) / "tiny-chat.gguf")
        kwargs: dict[str, Any] = {"binary": args.real_server_bin} if args.real_server_bin else {}
        with LlamaServer(model, extra_args=list(SERVER_ARGS), **kwargs) as server:
            assert server.base_url is not None  # set once started
            results = measure(server.base_url, inputs, args.rounds, args.repeats)
    command = " ".join(["python -m benchmarks embed", *(argv if argv is not None else sys.argv[2:])])
    text = render(results, inputs=args.inputs, repeats=args.repeats,
                  server=f"llama-server `{' '.join(SERVER_ARGS)}`, model `{Path(model).name}`", command=command)
    print(text)
    args.output.write_text(text, encoding="utf-8")
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
