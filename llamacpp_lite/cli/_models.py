"""`models`: the models a server offers, and loading or unloading them on a llama-server router."""

from __future__ import annotations

import argparse
from typing import Any

from .._management import DEFAULT_MODEL_TIMEOUT
from .._server_info import ModelInfo
from ._common import PROG, client, command, print_json


def _as_json(model: ModelInfo) -> dict[str, Any]:
    return {"id": model.id, "status": model.status, "aliases": list(model.aliases), "n_ctx": model.n_ctx}


def _cmd_models(args: argparse.Namespace) -> int:
    """`models`: list them; `--load ID` / `--unload ID` first (waiting, unless `--no-wait`)."""
    with client(args) as model:
        changed = None
        if args.load is not None:
            changed = model.load_model(args.load, wait=not args.no_wait, timeout=args.wait_timeout)
        elif args.unload is not None:
            changed = model.unload_model(args.unload, wait=not args.no_wait, timeout=args.wait_timeout)
        if changed is not None and not args.list:
            models = [changed]
        else:
            models = model.models()
    if args.json:
        print_json([_as_json(entry) for entry in models])
        return 0
    width = max((len(entry.id) for entry in models), default=2)
    for entry in models:
        context = f"  n_ctx {entry.n_ctx}" if entry.n_ctx else ""
        print(f"{entry.id:<{width}}  {entry.status}{context}")
    return 0


def add(commands: Any, connection: argparse.ArgumentParser) -> None:
    models = command(commands, "models", _cmd_models, "list the server's models; load or unload one (router mode)", f"""\
  {PROG} models                          id and status of each model (a router lists all of its models)
  {PROG} models --load qwen-7b           load it and wait until it is loaded
  {PROG} models --unload qwen-7b --list  unload it, then list all models
  {PROG} models --json | jq -r '.[] | select(.status == "loaded") | .id'
  {PROG} chat --model qwen-7b "hi"       a router loads the model a request names by itself
""", [connection])
    action = models.add_mutually_exclusive_group()
    action.add_argument("--load", metavar="ID", help="load this model (router mode)")
    action.add_argument("--unload", metavar="ID", help="unload this model (router mode)")
    models.add_argument("--no-wait", action="store_true",
                        help="return once the router accepted the load or unload, without waiting for it")
    models.add_argument("--wait-timeout", type=float, default=DEFAULT_MODEL_TIMEOUT, metavar="SECONDS",
                        help=f"how long to wait for the load or unload (default: {DEFAULT_MODEL_TIMEOUT:g})")
    models.add_argument("--list", action="store_true", help="after --load/--unload, list all models")
    models.add_argument("--json", action="store_true", help="print the models as JSON")
