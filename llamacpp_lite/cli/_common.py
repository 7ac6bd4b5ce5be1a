"""What every command of the command line shares: exit statuses, argument types, the client."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import traceback
from typing import Any, Callable, Sequence

from .._config import DEFAULT_BASE_URL
from .._errors import (
    AuthenticationError,
    BadRequestError,
    ConnectTimeout,
    ContextWindowOverflowException,
    InvalidRequestError,
    LlamaCppError,
    ModalityNotSupportedError,
    ModelThrottledException,
    NotSupportedError,
    ServerError,
    ServerStartError,
    StreamError,
    StructuredOutputError,
    TimeoutException,
    TransportError,
)
from .._model import BASE_URL_ENV, LlamaCppModel

PROG = "llamacpp-lite"

"""Environment variable read for the server's URL when `--base-url` is not given."""

DEFAULT_TIMEOUT = (10.0, 600.0)
"""Seconds to connect, and seconds the server may stay silent while answering."""

REPL_HELP = "/reset starts a new conversation, /quit (or Ctrl-D) leaves, /help shows this"


class UsageError(Exception):
    """The command line or its input cannot be used (exit status 2)."""


# -- exit status: the one place that maps errors to exit codes --------------------------------


@dataclasses.dataclass(frozen=True)
class ExitStatus:
    """One exit status of the command.

    Attributes:
        code: The process exit code.
        label: Starts the error line on stderr.
        meaning: Its line in the exit-status table of the module docstring and `--help`.
        errors: The exception classes that end the command with this status.
    """

    code: int
    label: str
    meaning: str
    errors: tuple[type[BaseException], ...] = ()


EXIT_STATUSES: tuple[ExitStatus, ...] = (
    ExitStatus(0, "ok", "success"),
    ExitStatus(1, "internal error", "internal error: an unexpected failure (a bug: rerun with --debug and report it)",
               (Exception,)),
    ExitStatus(2, "usage error", "usage error: bad arguments or input (nothing was sent)",
               (UsageError, InvalidRequestError)),
    ExitStatus(3, "connection error", "cannot connect to the server", (TransportError, ConnectTimeout)),
    ExitStatus(4, "timeout", "timeout: the server sent nothing for too long", (TimeoutException,)),
    ExitStatus(5, "authentication failed", "authentication failed: the API key is missing or wrong",
               (AuthenticationError,)),
    ExitStatus(6, "request rejected", "the server rejected the request (bad parameter, grammar, ...)",
               (BadRequestError,)),
    ExitStatus(7, "context overflow", "context overflow: the prompt does not fit the server's context",
               (ContextWindowOverflowException,)),
    ExitStatus(8, "not supported", "not supported by the server or the model (endpoint, image or audio input)",
               (NotSupportedError, ModalityNotSupportedError)),
    ExitStatus(9, "server busy", "the server is busy or still loading the model: retry later",
               (ModelThrottledException,)),
    ExitStatus(10, "server error", "server error", (ServerError,)),
    ExitStatus(11, "stream error", "the answer stream broke off or was malformed", (StreamError,)),
    ExitStatus(12, "invalid structured output", "invalid structured output: the answer does not match the JSON Schema",
               (StructuredOutputError,)),
    ExitStatus(13, "server start failed", "the managed llama-server could not start", (ServerStartError,)),
    ExitStatus(130, "interrupted", "interrupted (Ctrl-C): a stream in progress is closed, freeing the server's slot",
               (KeyboardInterrupt,)),
    ExitStatus(141, "output closed", "stdout was closed early (e.g. piped into head)", (BrokenPipeError,)),
)
"""Every exit status, in code order; the error classes of each are matched most specific first."""

_STATUS_BY_ERROR = {error: status for status in EXIT_STATUSES for error in status.errors}


def exit_status(exc: BaseException) -> ExitStatus:
    """Return the exit status of an exception: that of its most specific listed class.

    Raises:
        LookupError: For a BaseException that is none of the listed ones (e.g. SystemExit).
    """
    for cls in type(exc).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    raise LookupError(f"no exit status for {type(exc).__name__}")


def report(exc: BaseException, *, debug: bool) -> int:
    """Print one line about `exc` on stderr (a traceback first with `debug`); return its exit code."""
    status = exit_status(exc)
    if isinstance(exc, BrokenPipeError):
        _discard_stdout()
        return status.code
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    message = str(exc).strip() if isinstance(exc, (LlamaCppError, UsageError)) else _describe(exc)
    lines = message.splitlines()
    more = " (more with --debug)" if len(lines) > 1 and not debug else ""
    print(f"{PROG}: {status.label}" + (f": {lines[0]}{more}" if lines else ""), file=sys.stderr, flush=True)
    return status.code


def _describe(exc: BaseException) -> str:
    """Describe an exception that is not the library's (or nothing, for Ctrl-C)."""
    if isinstance(exc, KeyboardInterrupt):
        return ""
    return f"{type(exc).__name__}: {exc}"


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# -- argument types -------------------------------------------------------------------------


def parse_param(text: str) -> tuple[str, Any]:
    """Parse `KEY=VALUE`; the value is JSON when it parses as JSON, else the string itself."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def parse_timeout(text: str) -> float | tuple[float, float]:
    """Parse `SECONDS` or `CONNECT,READ` seconds."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected SECONDS or CONNECT,READ (positive numbers), got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def read_bytes(path: str, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def read_text(path: str, what: str) -> str:
    try:
        return read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the {what} {path} is not UTF-8 text: {exc.reason}") from exc


def read_json(path: str, what: str) -> Any:
    try:
        return json.loads(read_text(path, what))
    except ValueError as exc:
        raise UsageError(f"the {what} {path} is not JSON: {exc}") from exc


def read_stdin() -> str:
    text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the input on stdin is empty")
    return text


# -- generation options (chat, complete, infill) ----------------------------------------------


def param_option(parser: argparse.ArgumentParser) -> None:
    """Add `--param KEY=VALUE` (repeatable; read as `args.param`, a list of pairs)."""
    parser.add_argument("--param", type=parse_param, action="append", default=[], metavar="KEY=VALUE",
                        help="a request field; VALUE is JSON if it parses, else a string (repeatable)")


def generation_options(parser: argparse.ArgumentParser, *, schema_help: str) -> None:
    """Add `--param`, `--max-tokens`, `--temperature`, `--seed` and `--grammar` | `--json-schema`."""
    param_option(parser)
    parser.add_argument("--max-tokens", type=int, metavar="N", help="the most tokens to generate")
    parser.add_argument("--temperature", type=float, metavar="T", help="sampling temperature")
    parser.add_argument("--seed", type=int, metavar="N", help="sampling seed")
    constraint = parser.add_mutually_exclusive_group()
    constraint.add_argument("--grammar", metavar="FILE", help="constrain the answer with a GBNF grammar file")
    constraint.add_argument("--json-schema", metavar="FILE", help=schema_help)


def generation_params(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields: `--param` pairs, overridden by the named options (not `--json-schema`)."""
    params = dict(args.param)
    named = {"max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed,
             "grammar": read_text(args.grammar, "grammar file") if args.grammar else None}
    params.update({key: value for key, value in named.items() if value is not None})
    return params


# -- the client -----------------------------------------------------------------------------


def client(args: argparse.Namespace, params: dict[str, Any] | None = None) -> LlamaCppModel:
    """Build the client from the connection options (the key falls back to $LLAMACPP_API_KEY)."""
    model_id = getattr(args, "model_id", None)
    return LlamaCppModel(args.base_url, timeout=args.timeout, api_key=args.api_key, params=params,
                         **({"model_id": model_id} if model_id is not None else {}))



def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))



def connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument("--base-url", metavar="URL",
                       help=f"the llama-server (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})")
    group.add_argument("--api-key", metavar="KEY",
                       help="API key (default: $LLAMACPP_API_KEY; prefer it: arguments are visible in ps)")
    group.add_argument("--timeout", type=parse_timeout, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help="seconds allowed to connect and between two bytes of the answer, or "
                            "CONNECT,READ (default: 10,600)")
    group.add_argument("--model", dest="model_id", metavar="ID",
                       help="the model to use: on a llama-server router (--models-dir/--models-preset) "
                            "or a proxy serving many models, its id (see `models`); a single-model "
                            "server ignores it")
    return options


def debug_option(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Add `--debug`; under a command it does not override a `--debug` given before the command."""
    parser.add_argument("--debug", action="store_true", default=False if top_level else argparse.SUPPRESS,
                        help="print tracebacks and the library's debug log")


def command(commands: Any, name: str, run: Callable[[argparse.Namespace], int], summary: str,
             examples: str, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=summary, parents=list(parents),
                                 epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    debug_option(parser, top_level=False)
    parser.set_defaults(run=run)
    return parser


