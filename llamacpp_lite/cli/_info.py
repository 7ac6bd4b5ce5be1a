"""`health`, `props`, `tokens`: what the server says about itself and about text."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Mapping

from ._common import PROG, client, command, print_json, read_stdin, read_text

def _cmd_health(args: argparse.Namespace) -> int:
    """`health`: the server's state (waiting for it with `--wait`)."""
    with client(args) as model:
        if args.wait is not None:
            model.wait_until_ready(timeout=args.wait)
        health = model.health()
    if args.json:
        print_json(health)
    else:
        print(f"{model.base_url}: {health.get('status', health)}")
    return 0


def _enabled(flags: Mapping[str, Any]) -> str:
    """Name the true flags (without a `supports_` prefix), or say none."""
    names = [name.removeprefix("supports_").replace("_", " ") for name, value in sorted(flags.items()) if value]
    return ", ".join(names) or "none"


def _cmd_props(args: argparse.Namespace) -> int:
    """`props`: the server's key properties."""
    with client(args) as model:
        props = model.props(args.model_id)  # on a router: that model's (without --model: the router's own)
    facts = {field.name: getattr(props, field.name) for field in dataclasses.fields(props) if field.name != "raw"}
    if args.json:
        print_json(facts)
        return 0
    rows = [
        ("server", model.base_url),
        ("build", props.build_info),
        ("model", props.model_path),
        ("context", f"{props.n_ctx} tokens per slot"),
        ("slots", props.total_slots),
        ("media", _enabled(props.modalities)),
        ("template", _enabled(props.chat_template_caps)),
    ]
    for name, value in rows:
        print(f"{name:<11} {value if value is not None else '-'}")
    return 0


def _cmd_tokens(args: argparse.Namespace) -> int:
    """`tokens`: count the tokens of a prompt (chat template applied) or of raw text, via the server."""
    if args.file:
        text = read_text(args.file, "file")
    else:
        text = read_stdin() if args.text in (None, "-") else args.text
    with client(args) as model:
        count = len(model.tokenize(text)) if args.raw else model.count_tokens(text, system_prompt=args.system,
                                                                              estimate=False)
    print(count)
    return 0


def add(commands: Any, connection: argparse.ArgumentParser) -> None:
    health = command(commands, "health", _cmd_health, "show whether the server is ready", f"""\
  {PROG} health
  {PROG} health --wait 60 && {PROG} chat "hi"      wait until the model is loaded
""", [connection])
    health.add_argument("--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for the server to be ready")
    health.add_argument("--json", action="store_true", help="print the answer as JSON")
    props = command(commands, "props", _cmd_props, "show the server's key properties", f"""\
  {PROG} props
  {PROG} props --json | jq .n_ctx
""", [connection])
    props.add_argument("--json", action="store_true", help="print them as JSON")
    tokens = command(commands, "tokens", _cmd_tokens, "count tokens exactly, with the server's tokenizer", f"""\
  {PROG} tokens "How many tokens is this prompt?"      as a chat prompt (template applied)
  {PROG} tokens --raw --file notes.txt                the text as it is
  cat notes.txt | {PROG} tokens --system "Be terse."
""", [connection])
    source = tokens.add_mutually_exclusive_group()
    source.add_argument("text", nargs="?", metavar="TEXT", help="the text; '-' or none reads stdin")
    source.add_argument("--file", metavar="FILE", help="count the tokens of this file")
    mode = tokens.add_mutually_exclusive_group()
    mode.add_argument("--raw", action="store_true", help="tokenize the text as it is, without the chat template")
    mode.add_argument("--system", metavar="TEXT", help="a system prompt counted with the prompt")
