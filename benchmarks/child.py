"""One driver, one scenario, in a fresh process: ``python -m benchmarks.child '<json spec>'``.

The spec names the driver, the scenario and its sizes; the result is printed as one JSON object on
stdout with ``status`` ``ok``, ``failed`` (an exception, or a stream that did not deliver every
piece) or ``unavailable`` (the driver's library cannot be imported). Measurements exclude imports
and start-up: CPU time (user+sys of this process, all threads, `time.process_time`) is taken around
the consuming loop only, after a short warm-up stream on a separate client object.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import sys
import time
from typing import Any

from benchmarks import rawhttp
from benchmarks.drivers import DRIVERS, Driver, Tally
from benchmarks.wire import LAST_CHUNK, expected_pieces

__all__ = ["main"]

_WARMUP_TOKENS = 8


class DeliveryError(Exception):
    """A stream did not deliver exactly the expected pieces."""


def _check(tally: Tally, tools: bool) -> None:
    """Raise `DeliveryError` unless the stream delivered every expected piece."""
    problem = tally.problem()
    if problem:
        raise DeliveryError(f"{'tool' if tools else 'text'} stream: {problem}")


async def _stream(driver: Driver, tools: bool) -> Tally:
    """Read one stream with `driver` and check it delivered every expected piece."""
    tally = Tally(expected_pieces(tools, driver.n))
    await driver.consume(tools, tally)
    _check(tally, tools)
    return tally


async def _warm_up(cls: type[Driver], url: str) -> None:
    """Run one short text and one tool stream, so lazy imports and first-call costs are not measured."""
    driver = cls(url, _WARMUP_TOKENS)
    try:
        await _stream(driver, False)
        await _stream(driver, True)
    finally:
        await driver.close()


async def _cpu(cls: type[Driver], spec: dict[str, Any]) -> dict[str, Any]:
    """Client CPU per token for text and tool-call streams of ``n`` tokens, then TTFT when paced.

    Each kind is read ``repeats`` times (alternating) and the least CPU time is kept: other work on
    the machine only ever adds to a measurement.
    """
    await _warm_up(cls, spec["url"])
    driver = cls(spec["url"], spec["n"])
    cpu_s: dict[bool, list[float]] = {False: [], True: []}
    wall_s: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(spec["repeats"]):
            for tools in (False, True):
                tally = Tally(expected_pieces(tools, driver.n))
                cpu, wall = time.process_time(), time.perf_counter()
                await driver.consume(tools, tally)
                cpu_s[tools].append(time.process_time() - cpu)
                wall_s[tools].append(time.perf_counter() - wall)
                _check(tally, tools)
    finally:
        await driver.close()
    result: dict[str, Any] = {}
    for tools, kind in ((False, "text"), (True, "tool")):
        result[f"{kind}_cpu_us"] = min(cpu_s[tools]) / driver.n * 1e6
        result[f"{kind}_tokens_per_s"] = driver.n / min(wall_s[tools])
    paced = cls(spec["paced_url"], spec["ttft_tokens"])
    try:
        ttfts = []
        for _ in range(spec["ttft_requests"]):
            start = time.perf_counter()
            tally = await _stream(paced, False)
            ttfts.append(tally.first_at - start)
    finally:
        await paced.close()
    result["ttft_ms"] = statistics.median(ttfts) * 1000
    return result


async def _connections(cls: type[Driver], spec: dict[str, Any]) -> dict[str, Any]:
    """Read ``requests`` short streams one after another on one client object."""
    driver = cls(spec["url"], spec["n"])
    try:
        for _ in range(spec["requests"]):
            await _stream(driver, False)
    finally:
        await driver.close()
    return {}


async def _concurrency(cls: type[Driver], spec: dict[str, Any]) -> dict[str, Any]:
    """Wall time of ``streams`` concurrent paced streams on one client object, relative to one stream."""
    driver = cls(spec["url"], spec["n"])
    single, together = [], []
    try:
        await asyncio.gather(*(_stream(driver, False) for _ in range(spec["streams"])))  # open the connections
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            await _stream(driver, False)
            single.append(time.perf_counter() - start)
            start = time.perf_counter()
            await asyncio.gather(*(_stream(driver, False) for _ in range(spec["streams"])))
            together.append(time.perf_counter() - start)
    finally:
        await driver.close()
    return {"single_s": statistics.median(single), "concurrent_s": statistics.median(together)}


def _peak_rss_kib() -> int:
    """Peak resident set size of this process so far, in KiB.

    Read from ``VmHWM`` in /proc/self/status rather than ``ru_maxrss``: on Linux ``ru_maxrss``
    survives ``exec`` and so would report the (much larger) harness this process was forked from.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def _memory(cls: type[Driver], spec: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS after one text stream of ``n`` tokens (the pieces are checked, never kept)."""
    await _warm_up(cls, spec["url"])
    driver = cls(spec["url"], spec["n"])
    tally = Tally(expected_pieces(False, driver.n))
    before = _peak_rss_kib()
    try:
        await driver.consume(False, tally)
    finally:
        await driver.close()
    _check(tally, False)
    return {"rss_before_kib": before, "peak_rss_kib": _peak_rss_kib()}


async def _drain(cls: type[Driver], spec: dict[str, Any]) -> dict[str, Any]:
    """Measure the fake server's own limit: read ``n`` tokens of text in 1 MiB reads, parsing nothing."""
    del cls  # the raw reader is the same whatever the driver
    target = rawhttp.Target(spec["url"])
    with socket.create_connection((target.host, target.port)) as sock:
        start = time.perf_counter()
        sock.sendall(rawhttp.chat_request(target, spec["n"], False, {}))
        tail = b""
        while not tail.endswith(LAST_CHUNK):
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("connection closed before the end of the response")
            tail = (tail + data)[-len(LAST_CHUNK) :]
        wall = time.perf_counter() - start
    return {"tokens_per_s": spec["n"] / wall}


class _Pace(Tally):
    """Counts the pieces of a stream whose content is not known in advance, and when the last came."""

    __slots__ = ("last_at",)

    def __init__(self) -> None:
        super().__init__([])
        self.last_at = 0.0

    def add(self, piece: str) -> None:
        """Record the arrival of one piece."""
        self.last_at = time.perf_counter()
        if self.count == 0:
            self.first_at = self.last_at
        self.count += 1


async def _rate(cls: type[Driver], spec: dict[str, Any]) -> dict[str, Any]:
    """Against a real llama-server: the client's delivery rate and the server's own for one stream."""
    await _warm_up_real(cls, spec)
    driver = cls(spec["url"], spec["n"], spec["extra"])
    pace = _Pace()
    try:
        await driver.consume(False, pace)
    finally:
        await driver.close()
    if pace.count < 2:
        raise DeliveryError(f"only {pace.count} text deltas")
    timings = pace.timings or {}
    return {
        "deltas": pace.count,
        "tokens": timings.get("predicted_n"),
        "client_tokens_per_s": (pace.count - 1) / (pace.last_at - pace.first_at),
        "server_tokens_per_s": timings.get("predicted_per_second"),
    }


async def _warm_up_real(cls: type[Driver], spec: dict[str, Any]) -> None:
    """One short stream, so first-call costs (and the server's prompt cache) are not in the measure."""
    driver = cls(spec["url"], _WARMUP_TOKENS, spec["extra"])
    try:
        await driver.consume(False, _Pace())
    finally:
        await driver.close()


SCENARIOS = {
    "cpu": _cpu,
    "connections": _connections,
    "concurrency": _concurrency,
    "memory": _memory,
    "drain": _drain,
    "rate": _rate,
}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the scenario a spec names and return its result (never raises)."""
    cls = DRIVERS[spec["driver"]]
    try:
        exec(cls.imports, {})  # a fixed statement from the driver table
    except ImportError as exc:
        return {"status": "unavailable", "error": str(exc)}
    try:
        result = asyncio.run(SCENARIOS[spec["scenario"]](cls, spec))
    except Exception as exc:  # any failure of the client under test is a result to report
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", **result}


def main() -> None:
    """Run the spec given as the only argument and print its result as JSON."""
    print(json.dumps(run(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
