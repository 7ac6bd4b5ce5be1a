"""Run the side-by-side benchmark: ``python -m benchmarks [--quick]`` (or ``python benchmarks/run.py``).

The fake llama-server runs in background threads of this process; every driver runs in its own
child process (`benchmarks.child`), one scenario at a time, so the server and the client under test
never share an interpreter. Rounds rotate the driver order so machine drift hits all drivers alike.
The report goes to stdout and to ``benchmarks/results.md`` (``--quick``: ``benchmarks/results-quick.md``,
which git ignores). The exit status is 1 if any available driver failed to deliver every token of a
stream (or a ``--require``d one was unavailable), 0 otherwise; targets missed are reported, not failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report, wire
from benchmarks.drivers import DRIVERS
from benchmarks.fake_server import FakeLlamaServer

__all__ = ["FULL", "QUICK", "Plan", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results.md"
QUICK_OUTPUT = ROOT / "benchmarks" / "results-quick.md"
DRAIN_TOKENS = 50_000
"""Tokens the raw reader reads each round to find the fake server's deliverable rate."""
MEMORY_BUDGET_S = 15.0
"""Longest client CPU time the memory scenario may spend on one stream."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """The sizes of one benchmark run."""

    rounds: int
    """Rounds of the CPU/TTFT scenario over every driver (order rotated each round)."""
    tokens: int
    """Tokens per stream in the CPU scenario (text streams and tool-call streams)."""
    repeats: int
    """Streams of each kind per driver and round in the CPU scenario; the least CPU is kept."""
    ttft_requests: int
    """Paced requests per driver and round for time to first token (the median is kept)."""
    ttft_ms: float
    """The fake server's delay before the first token of a paced stream."""
    paced_tps: float
    """Tokens per second of a paced stream."""
    concurrency_tokens: int
    """Tokens per stream in the concurrency scenario."""
    concurrency_tps: float
    """Tokens per second of each stream in the concurrency scenario."""
    concurrency_repeats: int
    """Repeats of one-stream and all-streams timing (the medians are kept)."""
    memory_tokens: tuple[int, int] | None
    """Stream lengths whose peak RSS is compared, or None to skip the memory scenario."""
    import_repeats: int
    """Fresh interpreters per import-time figure (the median is kept)."""
    ttft_tokens: int = 8
    conn_requests: int = 100
    conn_tokens: int = 4
    streams: int = 64
    real_tokens: int = 1000
    """Tokens per stream against a real llama-server (capped by its context)."""


FULL = Plan(
    rounds=5,
    tokens=10_000,
    repeats=2,
    ttft_requests=10,
    ttft_ms=20.0,
    paced_tps=500.0,
    concurrency_tokens=50,
    concurrency_tps=100.0,
    concurrency_repeats=3,
    memory_tokens=(20_000, 200_000),
    import_repeats=3,
)
QUICK = Plan(
    rounds=1,
    tokens=2_000,
    repeats=1,
    ttft_requests=3,
    ttft_ms=20.0,
    paced_tps=500.0,
    concurrency_tokens=10,
    concurrency_tps=100.0,
    concurrency_repeats=1,
    memory_tokens=None,
    import_repeats=1,
)


def _child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"status": "failed", "error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def _import_ms(statement: str, repeats: int) -> float | None:
    """Median time of `statement` in fresh interpreters, in ms, or None if it fails."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return None
        times.append(float(proc.stdout) * 1000)
    return statistics.median(times)


class Harness:
    """Runs every scenario of a plan against the fake server and collects the results.

    Args:
        server: The running fake server.
        plan: Sizes of the run.
        drivers: Driver names to run, the floor first.
        timeout: Seconds allowed to one child process.
    """

    def __init__(self, server: FakeLlamaServer, plan: Plan, drivers: list[str], timeout: float) -> None:
        self.server = server
        self.plan = plan
        self.drivers = drivers
        self.timeout = timeout
        self.results = report.Results(plan=dataclasses.asdict(plan), drivers=drivers, drain_tokens=DRAIN_TOKENS)

    def _url(self, tps: float = 0.0, ttft_ms: float = 0.0) -> str:
        """Return the server's base URL, paced if `tps` or `ttft_ms` are set."""
        if not (tps or ttft_ms):
            return self.server.url
        return f"{self.server.url}/tps={tps:g}/ttft_ms={ttft_ms:g}"

    def _run(self, driver: str, scenario: str, **spec: Any) -> dict[str, Any]:
        """Run one scenario of one driver, noting the server's connections, requests and CPU over it."""
        (cpu, tokens), accepted, requests = self.server.stream_cpu, self.server.accepted, self.server.requests
        result = _child({"driver": driver, "scenario": scenario, **spec}, self.timeout)
        result["connections"] = self.server.accepted - accepted
        result["requests"] = self.server.requests - requests
        result["server_cpu_s"] = self.server.stream_cpu[0] - cpu
        result["server_tokens"] = self.server.stream_cpu[1] - tokens
        if result["status"] != "ok":
            self.results.note(driver, scenario, result)
        print(f"  {scenario:<12} {driver:<20} {result['status']}", file=sys.stderr, flush=True)
        return result

    def prerender(self) -> None:
        """Render every unpaced body the run will ask for, so rendering is never timed."""
        sizes = {self.plan.tokens, self.plan.conn_tokens, 8, DRAIN_TOKENS, *(self.plan.memory_tokens or ())}
        for n in sizes:
            for usage in (False, True):
                wire.stream_body(False, n, usage)
                if n in (self.plan.tokens, 8):
                    wire.stream_body(True, n, usage)

    def imports(self) -> None:
        """Time each driver's import statement in fresh interpreters."""
        for name in self.drivers:
            self.results.imports[name] = _import_ms(DRIVERS[name].imports, self.plan.import_repeats)

    def rounds(self) -> None:
        """CPU per token (text and tool), tokens/s and TTFT per driver; the server's limit per round."""
        for r in range(self.plan.rounds):
            print(f"round {r + 1}/{self.plan.rounds}", file=sys.stderr, flush=True)
            self.results.drain.append(self._run("floor", "drain", url=self._url(), n=DRAIN_TOKENS))
            k = r % len(self.drivers)
            order = self.drivers[k:] + self.drivers[:k]
            self.results.rounds.append(
                {
                    name: self._run(
                        name,
                        "cpu",
                        url=self._url(),
                        n=self.plan.tokens,
                        repeats=self.plan.repeats,
                        paced_url=self._url(self.plan.paced_tps, self.plan.ttft_ms),
                        ttft_tokens=self.plan.ttft_tokens,
                        ttft_requests=self.plan.ttft_requests,
                    )
                    for name in order
                }
            )

    def connections(self) -> None:
        """TCP connections opened for sequential short requests on one client object."""
        for name in self.drivers:
            self.results.connections[name] = self._run(
                name, "connections", url=self._url(), n=self.plan.conn_tokens, requests=self.plan.conn_requests
            )

    def concurrency(self) -> None:
        """Wall time of many concurrent paced streams relative to one, for the async drivers."""
        for name in self.drivers:
            if DRIVERS[name].is_async:
                self.results.concurrency[name] = self._run(
                    name,
                    "concurrency",
                    url=self._url(self.plan.concurrency_tps),
                    n=self.plan.concurrency_tokens,
                    streams=self.plan.streams,
                    repeats=self.plan.concurrency_repeats,
                )

    def memory(self) -> None:
        """Peak RSS for a short and a long stream, each in a fresh process.

        A driver whose CPU per token (from the rounds) would make the long stream take longer than
        `MEMORY_BUDGET_S` is skipped, to keep the run within a few minutes.
        """
        for name in self.drivers:
            cpu_us = [r[name]["text_cpu_us"] for r in self.results.rounds if r[name]["status"] == "ok"]
            for n in self.plan.memory_tokens or ():
                estimate = statistics.median(cpu_us) * n / 1e6 if cpu_us else 0.0
                if estimate > MEMORY_BUDGET_S:
                    result = {"status": "skipped", "error": f"{n:,} tokens would take ~{estimate:.0f} s"}
                else:
                    result = self._run(name, "memory", url=self._url(), n=n)
                self.results.memory.setdefault(name, {})[str(n)] = result


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round: a CI delivery check")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--tokens", type=int, help="override tokens per stream in the CPU scenario")
    parser.add_argument("--drivers", help=f"comma-separated subset of: {', '.join(DRIVERS)} (floor is always run)")
    parser.add_argument("--require", default="", help="comma-separated drivers whose being unavailable is a failure")
    parser.add_argument(
        "--output", type=Path, help="the Markdown report (default: benchmarks/results.md, or results-quick.md)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed to one child process")
    parser.add_argument("--real-server-bin", type=Path, help="a llama-server binary, for the real-server section")
    parser.add_argument("--real-model", type=Path, help="a GGUF model for --real-server-bin")
    args = parser.parse_args(argv)
    if (args.real_server_bin is None) != (args.real_model is None):
        parser.error("--real-server-bin and --real-model go together")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 1 if any available driver failed to deliver every token, a ``--require``d
        driver was unavailable or a requested real llama-server did not start; else 0 (2 for
        unknown driver names).
    """
    args = _parse(argv)
    plan = QUICK if args.quick else FULL
    plan = dataclasses.replace(plan, rounds=args.rounds or plan.rounds, tokens=args.tokens or plan.tokens)
    names = list(DRIVERS) if not args.drivers else ["floor", *(d for d in args.drivers.split(",") if d != "floor")]
    required = {name for name in args.require.split(",") if name}
    unknown = (set(names) | required) - set(DRIVERS)
    if unknown:
        print(f"unknown drivers: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with FakeLlamaServer() as server:
        harness = Harness(server, plan, names, args.timeout)
        harness.prerender()
        harness.imports()
        harness.rounds()
        harness.connections()
        harness.concurrency()
        harness.memory()
    results = harness.results
    if args.real_server_bin:
        from benchmarks import real_server

        print("real llama-server", file=sys.stderr, flush=True)
        results.real = real_server.run(
            args.real_server_bin, args.real_model, plan.real_tokens, names, lambda spec: _child(spec, args.timeout)
        )
        for name, result in results.real["drivers"].items():
            if result["status"] != "ok":
                results.note(name, "real server", result)
        if "error" in results.real:
            print(f"the real llama-server did not start: {results.real['error']}", file=sys.stderr)
    results.command = shlex.join(["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])])
    results.elapsed_s = time.perf_counter() - started
    results.quick = args.quick
    text = report.render(results)
    print(text)
    output = args.output or (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    output.write_text(text, encoding="utf-8")
    print(f"written to {output}", file=sys.stderr)
    missing = sorted(name for name in required if name not in names or results.status(name) == "unavailable")
    if missing:
        print(f"required drivers unavailable: {', '.join(missing)}", file=sys.stderr)
    return 1 if results.failed() or missing or "error" in (results.real or {}) else 0


if __name__ == "__main__":
    sys.exit(main())
