"""Profile one driver's consuming loop: ``python -m benchmarks.profiling [DRIVER] [--tools]``.

Runs the fake server in this process (its threads are not profiled: cProfile sees the main thread
only) and prints cProfile's statistics for one stream after a warm-up stream, to find where a
client's CPU per token goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats

from benchmarks.drivers import DRIVERS, Tally
from benchmarks.fake_server import FakeLlamaServer
from benchmarks.wire import expected_pieces

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Profile the driver named on the command line and print the statistics."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("driver", nargs="?", default="lite_sync", choices=list(DRIVERS))
    parser.add_argument("--tokens", type=int, default=20_000, help="tokens in the profiled stream")
    parser.add_argument("--tools", action="store_true", help="profile a tool-call stream instead of text")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative, ...)")
    parser.add_argument("--limit", type=int, default=30, help="rows to print")
    args = parser.parse_args(argv)
    with FakeLlamaServer() as server:
        driver = DRIVERS[args.driver](server.url, args.tokens)
        asyncio.run(driver.consume(args.tools, Tally(expected_pieces(args.tools, args.tokens))))
        tally = Tally(expected_pieces(args.tools, args.tokens))
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(driver.consume(args.tools, tally))
        profiler.disable()
        asyncio.run(driver.close())
    print(f"{args.driver}: {tally.problem() or 'every piece delivered'}")
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.limit)


if __name__ == "__main__":
    main()
