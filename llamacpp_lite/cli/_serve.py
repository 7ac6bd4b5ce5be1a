"""`serve` and `demo`: a managed llama-server, and the README's demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import time
from typing import Any

from .._errors import ServerStartError
from .._model import BASE_URL_ENV
from ..demo import run_demo, tiny_model_path
from ..server import LlamaServer
from ._common import DEFAULT_TIMEOUT, PROG, UsageError, command, parse_timeout

SERVE_CHECK_INTERVAL = 0.5
"""Seconds between the checks that the managed server's process still runs."""


def _watch(server: LlamaServer) -> None:
    """Return only by an exception: Ctrl-C/SIGTERM, or the process exiting (with its log)."""
    while True:
        time.sleep(SERVE_CHECK_INTERVAL)
        if server.returncode is not None:
            raise ServerStartError(f"llama-server exited with code {server.returncode}:\n{server.log_tail()}")


def _cmd_serve(args: argparse.Namespace) -> int:
    """`serve`: run a managed llama-server until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it as Ctrl-C does
    if args.models_dir and args.model:
        raise UsageError("give a MODEL or --models-dir, not both")
    model_path = None if args.models_dir else (args.model or tiny_model_path())
    with LlamaServer(model_path, binary=args.binary, extra_args=shlex.split(args.server_args), port=args.port,
                     startup_timeout=args.startup_timeout, models_dir=args.models_dir) as server:
        print(server.base_url, flush=True)
        what = model_path or f"the models of {args.models_dir} (router mode)"
        print(f"{PROG}: llama-server (pid {server.pid}) serves {what} on {server.base_url}; "
              f"Ctrl-C to stop", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            _watch(server)
    print(f"{PROG}: llama-server stopped", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """`demo`: the README's demo, against `--base-url` or a managed server on the tiny model."""
    run_demo(args.base_url or os.environ.get(BASE_URL_ENV) or None, api_key=args.api_key, timeout=args.timeout)
    return 0


def add(commands: Any) -> None:
    serve = command(commands, "serve", _cmd_serve, "run a managed llama-server until Ctrl-C or SIGTERM", f"""\
  {PROG} serve model.gguf --server-args="-c 4096 -np 2"
  {PROG} serve                                 the tiny test model (gibberish, for trying things out)
  {PROG} serve --models-dir models/ --server-args="--models-max 2"   router mode: many models
  {PROG} serve model.gguf > server.url &       prints the server's URL once it is ready
  until [ -s server.url ]; do sleep 0.5; done
  {PROG} chat --base-url "$(cat server.url)" "hi"; kill %1      SIGTERM stops it cleanly
""")
    serve.add_argument("model", nargs="?", metavar="MODEL",
                       help="a GGUF model file (default: the tiny test model, written to the cache)")
    serve.add_argument("--models-dir", metavar="DIR",
                       help="router mode: serve every GGUF file of DIR, each loaded when a request names it")
    serve.add_argument("--binary", metavar="PATH",
                       help="the llama-server binary (default: $LLAMA_SERVER_BIN, a cached build, PATH)")
    serve.add_argument("--server-args", default="", metavar="ARGS",
                       help="more llama-server arguments, one shell-quoted string (write --server-args=\"...\")")
    serve.add_argument("--port", type=int, metavar="PORT", help="listen on this port (default: a free one)")
    serve.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long to wait for the server to be ready (default: 60)")
    demo = command(commands, "demo", _cmd_demo, "run the demo: streaming, a tool call, structured output", f"""\
  {PROG} demo                                  on a managed llama-server with the tiny test model
  {PROG} demo --base-url http://localhost:8080
""")
    demo.add_argument("--base-url", metavar="URL",
                      help=f"use this llama-server (default: ${BASE_URL_ENV}, else start one on the tiny model)")
    demo.add_argument("--api-key", metavar="KEY", help="API key of that server (default: $LLAMACPP_API_KEY)")
    demo.add_argument("--timeout", type=parse_timeout, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                      help="seconds allowed to connect and between two bytes, or CONNECT,READ (default: 10,600)")
