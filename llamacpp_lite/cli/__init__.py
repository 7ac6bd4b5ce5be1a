"""`llamacpp-lite`: the command line of llamacpp_lite (also `python -m llamacpp_lite`).

Examples:
    llamacpp-lite chat "Tell me a joke."            one answer, tokens printed as they arrive
    echo "Summarize: ..." | llamacpp-lite chat      the prompt from stdin
    llamacpp-lite chat                              a conversation (/reset, /quit, Ctrl-D)
    llamacpp-lite chat --json "hi" | jq -c .        the Strands StreamEvents as JSON lines
    llamacpp-lite health; llamacpp-lite props       the server's state and key properties
    llamacpp-lite tokens "How long is this?"        exact token counts, by the server
    llamacpp-lite embed "some text" "more text"     embedding vectors as JSON lines (--embeddings)
    llamacpp-lite rerank "query" doc1 doc2          documents by relevance (--reranking)
    llamacpp-lite complete "Once upon a time"       raw completion, no chat template, streamed
    llamacpp-lite infill --prefix A --suffix B      fill in the middle (code models), streamed
    llamacpp-lite models [--load ID | --unload ID]  a router's models, loaded on demand
    llamacpp-lite chat --model ID "hi"              on a router, the model to use (any command)
    llamacpp-lite serve [MODEL.gguf]                a managed llama-server until Ctrl-C
    llamacpp-lite demo [--base-url URL]             the demo of the README
    llamacpp-lite COMMAND --help                    the options and examples of a command

The server is `--base-url`, else `$LLAMACPP_BASE_URL`, else http://localhost:8080; the API key
is `--api-key`, else `$LLAMACPP_API_KEY`, and is never printed. An error prints one line on
stderr (a traceback too with `--debug`) and exits with a status that tells its class apart.

Exit status:
  0    success
  1    internal error: an unexpected failure (a bug: rerun with --debug and report it)
  2    usage error: bad arguments or input (nothing was sent)
  3    cannot connect to the server
  4    timeout: the server sent nothing for too long
  5    authentication failed: the API key is missing or wrong
  6    the server rejected the request (bad parameter, grammar, ...)
  7    context overflow: the prompt does not fit the server's context
  8    not supported by the server or the model (endpoint, image or audio input)
  9    the server is busy or still loading the model: retry later
  10   server error
  11   the answer stream broke off or was malformed
  12   invalid structured output: the answer does not match the JSON Schema
  13   the managed llama-server could not start
  130  interrupted (Ctrl-C): a stream in progress is closed, freeing the server's slot
  141  stdout was closed early (e.g. piped into head)
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Any, Sequence

from .._version import __version__
from . import _chat, _inference, _info, _models, _serve
from ._common import (
    EXIT_STATUSES,
    PROG,
    ExitStatus,
    UsageError,
    connection_options,
    debug_option,
    exit_status,
    parse_param,
    parse_timeout,
    report,
)

__all__ = [
    "EXIT_STATUSES",
    "ExitStatus",
    "UsageError",
    "build_parser",
    "exit_status",
    "main",
    "parse_param",
    "parse_timeout",
    "report",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the `llamacpp-lite` command."""
    description, _, epilog = (__doc__ or "").partition("\n\n")  # the docstring is the manual
    parser = argparse.ArgumentParser(prog=PROG, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    debug_option(parser, top_level=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    connection = connection_options()
    _chat.add(commands, connection)
    _info.add(commands, connection)
    _inference.add(commands, connection)
    _models.add(commands, connection)
    _serve.add(commands)
    return parser


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _configure_logging(debug: bool) -> None:
    """Show warnings and the library's log on stderr as one line each (its debug log with `--debug`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger = logging.getLogger("llamacpp_lite")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    warnings.showwarning = _show_warning


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status (the console script's entry point)."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug)
    try:
        status: int = args.run(args)
        return status
    except (Exception, KeyboardInterrupt) as exc:
        return report(exc, debug=args.debug)
