"""The collected results of a run, and their Markdown rendering with the targets beside them."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.drivers import DRIVERS

__all__ = ["Results", "machine", "render"]

ROOT = Path(__file__).resolve().parent.parent

CPU_TARGETS = {"lite_sync": 1.5, "lite_async": 2.0}
"""Largest acceptable ratio of client CPU per token to the floor's, per text token and per tool fragment."""
TTFT_SLACK_MS = 5.0
"""How far behind the floor a library's time to first token may be."""
CONCURRENCY_TARGET = 1.5
"""Largest acceptable wall time of all concurrent streams relative to one stream."""
MEMORY_GROWTH_LIMIT_MIB = 2.0
"""Largest peak-RSS growth from the short to the long stream that still counts as flat."""
LIBRARY = ("lite_sync", "lite_async")
PACKAGES = ("requests", "urllib3", "sseclient-py", "httpx", "openai", "strands-agents")


@dataclasses.dataclass
class Results:
    """Everything a run measured; each child result is the JSON dict `benchmarks.child` printed."""

    plan: dict[str, Any]
    drivers: list[str]
    imports: dict[str, float | None] = dataclasses.field(default_factory=dict)
    drain: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rounds: list[dict[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    connections: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    concurrency: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    memory: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    real: dict[str, Any] | None = None
    problems: list[tuple[str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    drain_tokens: int = 0
    command: str = ""
    elapsed_s: float = 0.0
    quick: bool = False

    def note(self, driver: str, scenario: str, result: dict[str, Any]) -> None:
        """Remember a child result whose status is not ``ok``."""
        self.problems.append((driver, scenario, result))

    def status(self, driver: str) -> str:
        """``unavailable``, ``failed`` (in any scenario) or ``ok``."""
        statuses = {result["status"] for name, _, result in self.problems if name == driver}
        return "unavailable" if "unavailable" in statuses else "failed" if statuses else "ok"

    def failed(self) -> bool:
        """Tell whether any available driver failed in any scenario."""
        return any(result["status"] == "failed" for _, _, result in self.problems)


def _git(*args: str) -> str:
    """Output of a git command in the repository, or '' if it fails."""
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def machine() -> dict[str, str]:
    """Describe this machine, the interpreter and the package versions."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    lite = (ROOT / "llamacpp_lite" / "_version.py").read_text(encoding="utf-8")
    lite_version = lite.split("__version__", 1)[1].split('"')[1] if "__version__" in lite else "?"
    commit = _git("rev-parse", "--short", "HEAD") or "no commit"
    dirty = ", uncommitted changes" if _git("status", "--porcelain", "--", "llamacpp_lite") else ""
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "load": "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
        "cpu": cpu,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": f"llamacpp_lite {lite_version} (git {commit}{dirty}); " + ", ".join(versions),
    }


def _median(values: list[float]) -> float | None:
    """Median, or None for no values."""
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    """Format a number, or an em dash for None."""
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _verdict(ok: bool) -> str:
    """Return the mark for a target met or missed."""
    return "met" if ok else "**missed**"


class _Table:
    """A Markdown table built row by row."""

    def __init__(self, *headers: str) -> None:
        self.lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]

    def row(self, *cells: str) -> None:
        """Append a row."""
        self.lines.append("| " + " | ".join(cells) + " |")

    def text(self) -> str:
        """Return the table as Markdown."""
        return "\n".join(self.lines)


def _ok_rounds(results: Results, name: str, key: str) -> list[tuple[float, float]]:
    """(driver value, floor value) of `key` in every round where both ran successfully."""
    pairs = []
    for rnd in results.rounds:
        mine, floor = rnd.get(name, {}), rnd.get("floor", {})
        if mine.get("status") == "ok" and floor.get("status") == "ok":
            pairs.append((mine[key], floor[key]))
    return pairs


def _stat(results: Results, name: str, key: str, combine: Callable[[float, float], float]) -> float | None:
    """Median over rounds of ``combine(driver value, floor value)``."""
    return _median([combine(mine, floor) for mine, floor in _ok_rounds(results, name, key)])


def _own(results: Results, name: str, key: str) -> float | None:
    """Median over rounds of the driver's own value of `key`."""
    return _stat(results, name, key, lambda mine, _: mine)


def _label(results: Results, name: str) -> str:
    """Return the driver's label, marked if it failed somewhere."""
    status = results.status(name)
    return DRIVERS[name].label + ("" if status == "ok" else f" — **{status}**")


def _cpu_section(results: Results) -> str:
    """Client CPU per token and time to first token, against the floor."""
    plan = results.plan
    table = _Table(
        "client", "text µs/token", "× floor", "tool µs/fragment", "× floor", "target",
        "text tokens/s", "TTFT ms", "TTFT − floor ms", "import ms",
    )  # fmt: skip
    for name in results.drivers:
        if results.status(name) == "unavailable":
            continue
        text = _own(results, name, "text_cpu_us")
        text_ratio = _stat(results, name, "text_cpu_us", lambda mine, floor: mine / floor)
        tool = _own(results, name, "tool_cpu_us")
        tool_ratio = _stat(results, name, "tool_cpu_us", lambda mine, floor: mine / floor)
        ttft = _own(results, name, "ttft_ms")
        ttft_gap = _stat(results, name, "ttft_ms", lambda mine, floor: mine - floor)
        target = "—"
        if name in CPU_TARGETS and text_ratio is not None and tool_ratio is not None:
            limit = CPU_TARGETS[name]
            ttft_ok = ttft_gap is not None and ttft_gap <= TTFT_SLACK_MS
            target = (
                f"≤ {limit}×: {_verdict(max(text_ratio, tool_ratio) <= limit)}; "
                f"TTFT ≤ floor + {TTFT_SLACK_MS:g} ms: {_verdict(ttft_ok)}"
            )
        rate = _own(results, name, "text_tokens_per_s")
        table.row(
            _label(results, name), _fmt(text, ".2f"), _fmt(text_ratio, ".2f", "×"), _fmt(tool, ".2f"),
            _fmt(tool_ratio, ".2f", "×"), target, _fmt(rate, ",.0f"), _fmt(ttft, ".2f"), _fmt(ttft_gap, "+.2f"),
            _fmt(results.imports.get(name), ".0f"),
        )  # fmt: skip
    return (
        "## Client CPU per token and time to first token\n\n"
        f"{plan['repeats']} text and {plan['repeats']} tool-call stream(s) of {plan['tokens']:,} tokens per driver "
        f"and round (the least CPU of each kind kept), {plan['rounds']} round(s), driver order rotated each round. "
        "CPU is user+sys of the client process (all threads) around the consuming loop only (after a warm-up "
        "stream; imports excluded), divided by the tokens; "
        "“× floor” is the median over rounds of the ratio to the floor in the same round. "
        f"TTFT: median of {plan['ttft_requests']} paced requests (first token after {plan['ttft_ms']:g} ms, "
        f"then {plan['paced_tps']:g} tokens/s) from the call to the first text delta. Import: the driver's "
        f"import statement in a fresh interpreter (median of {plan['import_repeats']}).\n\n" + table.text()
    )


def _server_section(results: Results) -> str:
    """How far the fake server is from being the bottleneck."""
    drains = [d for d in results.drain if d["status"] == "ok"]
    rate = _median([d["tokens_per_s"] for d in drains])
    drain_cpu = _median([d["server_cpu_s"] / d["server_tokens"] * 1e6 for d in drains if d["server_tokens"]])
    served = [res for rnd in results.rounds for res in rnd.values() if res.get("server_tokens")]
    all_cpu = sum(r["server_cpu_s"] for r in served) / sum(r["server_tokens"] for r in served) * 1e6 if served else None
    floor = _own(results, "floor", "text_tokens_per_s")
    floor_cpu = _own(results, "floor", "text_cpu_us")
    headroom = f", {rate / floor:.1f}× the floor client's rate" if rate and floor else ""
    return (
        "## The fake server is not the bottleneck\n\n"
        "Unpaced bodies are pre-rendered and sent with one `sendall`; each serving thread measures its own CPU "
        "time (`time.thread_time`) from reading the request to the last byte sent.\n\n"
        f"* server CPU per token: **{_fmt(drain_cpu, '.2f')} µs** to a raw reader, "
        f"{_fmt(all_cpu, '.2f')} µs over every unpaced stream of the rounds (the floor client spends "
        f"{_fmt(floor_cpu, '.2f')} µs);\n"
        f"* the server's deliverable rate, read by a raw reader in its own process (1 MiB `recv`, no parsing, "
        f"{results.drain_tokens:,} tokens, median of rounds): **{_fmt(rate, ',.0f')} tokens/s**{headroom} "
        f"(floor: {_fmt(floor, ',.0f')} tokens/s; a real llama-server on this machine: ~500–1,800)."
    )


def _connections_section(results: Results) -> str:
    """TCP connections per 100 sequential requests."""
    plan = results.plan
    table = _Table("client", "TCP connections", "requests seen", "target")
    for name, res in results.connections.items():
        if res["status"] == "unavailable":
            continue
        target = f"1: {_verdict(res['connections'] == 1)}" if name in LIBRARY else "—"
        table.row(_label(results, name), str(res["connections"]), str(res["requests"]), target)
    return (
        f"## Connections for {plan['conn_requests']} sequential requests\n\n"
        f"{plan['conn_requests']} streams of {plan['conn_tokens']} tokens, one after another on one client "
        "object, each read to its end; connections counted as the fake server accepts them "
        "(it keeps connections alive like llama-server: `Keep-Alive: timeout=5, max=100`).\n\n" + table.text()
    )


def _concurrency_section(results: Results) -> str:
    """Concurrent async streams relative to one."""
    plan = results.plan
    table = _Table("client", "1 stream s", f"{plan['streams']} streams s", "ratio", "target")
    for name, res in results.concurrency.items():
        if res["status"] == "unavailable":
            continue
        ratio = res["concurrent_s"] / res["single_s"] if res["status"] == "ok" else None
        target = "—"
        if name in LIBRARY and ratio is not None:
            target = f"< {CONCURRENCY_TARGET}×: {_verdict(ratio < CONCURRENCY_TARGET)}"
        table.row(
            _label(results, name), _fmt(res.get("single_s"), ".3f"), _fmt(res.get("concurrent_s"), ".3f"),
            _fmt(ratio, ".2f", "×"), target,
        )  # fmt: skip
    return (
        "## Concurrent async streams\n\n"
        f"{plan['streams']} concurrent streams on one client object (`asyncio.gather`) against a paced server "
        f"({plan['concurrency_tokens']} tokens at {plan['concurrency_tps']:g} tokens/s each), against one stream "
        f"alone, after one warm-up round that opens the connections; medians of {plan['concurrency_repeats']}.\n\n"
        + table.text()
    )


def _memory_section(results: Results) -> str:
    """Peak RSS for a short and a long stream."""
    short, long = (str(n) for n in results.plan["memory_tokens"])
    table = _Table(
        "client", f"peak RSS, {int(short):,} tokens", f"peak RSS, {int(long):,} tokens",
        f"rise during the {int(short):,}-token stream", f"rise during the {int(long):,}-token stream", "target",
    )  # fmt: skip
    for name, runs in results.memory.items():
        a, b = runs[short], runs[long]
        if "unavailable" in (a["status"], b["status"]):
            continue
        if "skipped" in (a["status"], b["status"]):
            skipped = a if a["status"] == "skipped" else b
            table.row(DRIVERS[name].label, "", "", "", "", f"skipped: {skipped['error']}")
            continue
        if a["status"] != "ok" or b["status"] != "ok":
            table.row(_label(results, name), "", "", "", "", "")
            continue
        rise_a, rise_b = ((r["peak_rss_kib"] - r["rss_before_kib"]) / 1024 for r in (a, b))
        target = "—"
        if name in LIBRARY:
            flat = rise_b - rise_a <= MEMORY_GROWTH_LIMIT_MIB
            target = f"flat (rise grows ≤ {MEMORY_GROWTH_LIMIT_MIB:g} MiB): {_verdict(flat)}"
        table.row(
            _label(results, name), f"{a['peak_rss_kib'] / 1024:.1f} MiB", f"{b['peak_rss_kib'] / 1024:.1f} MiB",
            f"+{rise_a:.1f} MiB", f"+{rise_b:.1f} MiB", target,
        )  # fmt: skip
    return (
        "## Peak memory against stream length\n\n"
        "Peak RSS of a fresh process (`VmHWM`: the high-water mark `ru_maxrss` reports, without the harness's "
        "inherited across `exec`), and how much it rose while one text stream was read (pieces checked as they "
        "arrive, never kept; the peak also holds the expected pieces, 8 bytes a token, allocated before).\n\n"
        + table.text()
    )


def _real_section(results: Results) -> str:
    """Client delivery rate against a real llama-server's own rate."""
    real = results.real or {}
    table = _Table("client", "text deltas", "server tokens", "client tokens/s", "server tokens/s", "client ÷ server")
    for name, res in real.get("drivers", {}).items():
        if res["status"] != "ok":
            continue
        server = res["server_tokens_per_s"]
        table.row(
            DRIVERS[name].label, str(res["deltas"]), _fmt(res["tokens"], "d"), f"{res['client_tokens_per_s']:,.0f}",
            _fmt(server, ",.0f"), _fmt(res["client_tokens_per_s"] / server if server else None, ".2f"),
        )  # fmt: skip
    return (
        "## Against a real llama-server\n\n"
        f"{real.get('server', '')}; one stream of {results.plan['real_tokens']} tokens (`ignore_eos`) per client, "
        "each in its own process after a warm-up stream. Client rate: text deltas per second from the first "
        "to the last; server rate: its own `timings.predicted_per_second` for the same request, as the client "
        "exposes it (— where it does not). A client rate far above any server's means the client held the whole "
        "answer back and replayed it (see its TTFT above).\n\n"
        + (f"**The server did not start:**\n\n```\n{real['error']}\n```" if "error" in real else table.text())
    )


def _problems_section(results: Results) -> str:
    """Drivers that were unavailable (once each) or failed (per scenario), with the error."""
    lines, unavailable = [], set()
    for driver, scenario, result in results.problems:
        if result["status"] == "unavailable":
            if driver not in unavailable:
                unavailable.add(driver)
                lines.append(f"* {DRIVERS[driver].label}: unavailable — {result.get('error', '')}")
        else:
            lines.append(f"* {DRIVERS[driver].label}, {scenario}: **failed** — {result.get('error', '')}")
    return "## Unavailable or failed\n\n" + ("\n".join(lines) if lines else "None: every driver delivered every token.")


def render(results: Results) -> str:
    """Render the report as Markdown.

    Args:
        results: What a run measured.

    Returns:
        The whole report, ending with a newline.
    """
    info = machine()
    sections = [
        "# llamacpp_lite benchmark results",
        f"Command: `{results.command}` (run time {results.elapsed_s:.0f} s, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)\n\n"
        f"Machine: nproc {info['nproc']}, {info['cpu']}, {info['os']}, {info['python']}; "
        f"{info['load']} at the end of the run (the machine is shared: other work inflates the figures)\n\n"
        f"Packages: {info['packages']}"
        + (
            "\n\nQuick mode: a delivery check for CI with small sizes and one round; its figures are only indicative."
            if results.quick
            else ""
        ),
        _cpu_section(results),
        _server_section(results),
        _connections_section(results),
        _concurrency_section(results),
    ]
    if results.plan["memory_tokens"]:
        sections.append(_memory_section(results))
    if results.real is not None:
        sections.append(_real_section(results))
    sections.append(_problems_section(results))
    return "\n\n".join(sections) + "\n"
