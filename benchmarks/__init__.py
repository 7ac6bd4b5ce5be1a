"""Side-by-side benchmark of llamacpp_lite against a raw floor, its own dependencies and its peers.

Run ``python -m benchmarks`` (full: a few minutes, writes ``benchmarks/results.md``) or
``python -m benchmarks --quick`` (CI: under a minute, exits non-zero if any available client failed
to deliver every token). ``python -m benchmarks.profiling lite_sync`` profiles one client's loop.
"""
