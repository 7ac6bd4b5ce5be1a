"""`llamacpp-lite`: the command line of llamacpp_lite (also `python -m llamacpp_lite`).

Examples:
    llamacpp-lite chat "Tell me a joke."            one answer, tokens printed as they arrive
    echo "Summarize: ..." | llamacpp-lite chat      the prompt from stdin
    llamacpp-lite chat                              a conversation (/reset, /quit, Ctrl-D)
    llamacpp-lite chat --json "hi" | jq -c .        the Strands StreamEvents as JSON lines
    llamacpp-lite health; llamacpp-lite props       the server's state and key properties
    llamacpp-lite tokens "How long is this?"        exact token counts, by the server
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
import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import shlex
import signal
import sys
import time
import traceback
import warnings
from typing import Any, Callable, Sequence, TextIO

from ._config import DEFAULT_BASE_URL
from ._errors import (
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
from ._model import BASE_URL_ENV, LlamaCppModel
from ._result import ChatResult, collect_result
from ._version import __version__
from .demo import run_demo, tiny_model_path
from .server import LlamaServer

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


def _read_bytes(path: str, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _read_text(path: str, what: str) -> str:
    try:
        return _read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the {what} {path} is not UTF-8 text: {exc.reason}") from exc


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(_read_text(path, what))
    except ValueError as exc:
        raise UsageError(f"the {what} {path} is not JSON: {exc}") from exc


def _read_stdin() -> str:
    text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the input on stdin is empty")
    return text


# -- the client -----------------------------------------------------------------------------


def _client(args: argparse.Namespace, params: dict | None = None) -> LlamaCppModel:
    """Build the client from the connection options (the key falls back to $LLAMACPP_API_KEY)."""
    return LlamaCppModel(args.base_url, timeout=args.timeout, api_key=args.api_key, params=params)


# -- chat -----------------------------------------------------------------------------------


class _Renderer:
    """Print stream events: text as it arrives, reasoning set apart, or every event as JSON.

    Args:
        out: Where the answer goes (stdout).
        err: Where the statistics line goes (stderr).
        json_lines: Print every event as one JSON line instead of the text.
        show_reasoning: Print the reasoning (dimmed on a terminal, else prefixed per line).
        stats: Print the token count and speed on `err` after each answer.
        structured: The text is JSON for a schema: print only the validated output.
    """

    REASONING_PREFIX = "reasoning: "
    DIM, RESET = "\x1b[2m", "\x1b[0m"

    def __init__(self, out: TextIO, err: TextIO, *, json_lines: bool, show_reasoning: bool, stats: bool,
                 structured: bool) -> None:
        self._out, self._err = out, err
        self._json_lines = json_lines
        self._show_reasoning = show_reasoning
        self._stats = stats
        self._structured = structured
        self._dim = out.isatty() and not os.environ.get("NO_COLOR")
        self._line_open = False  # the cursor is in the middle of a line on `out`
        self._stop_reason = "end_turn"

    def event(self, event: dict) -> None:
        """Print one event."""
        if self._json_lines:
            self._write(json.dumps(event, ensure_ascii=False) + "\n")
        elif "contentBlockDelta" in event:
            self._delta(event["contentBlockDelta"]["delta"])
        elif "contentBlockStop" in event or "messageStop" in event:
            self.end_line()
        elif "output" in event:
            self._write(json.dumps(event["output"], ensure_ascii=False) + "\n")
        if "messageStop" in event:
            self._stop_reason = event["messageStop"]["stopReason"]
        elif "metadata" in event and self._stats:
            self._print_stats(event["metadata"])

    def _delta(self, delta: dict) -> None:
        if "text" in delta and not self._structured:
            self._write(delta["text"])
        elif "reasoningContent" in delta and self._show_reasoning:
            self._reasoning(delta["reasoningContent"].get("text", ""))

    def _reasoning(self, text: str) -> None:
        if self._dim:
            self._write(self.DIM + text + self.RESET)
            return
        for line in text.splitlines(keepends=True):
            self._write(("" if self._line_open else self.REASONING_PREFIX) + line)

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._line_open = not text.endswith("\n")

    def end_line(self) -> None:
        """Finish a partly written line (at the end of a block, or when interrupted)."""
        if self._line_open:
            self._write("\n")

    def _print_stats(self, metadata: dict) -> None:
        tokens = metadata.get("usage", {}).get("outputTokens", 0)
        speed = metadata.get("timings", {}).get("predicted_per_second")
        parts = [f"{tokens} tokens"] + ([f"{speed:.1f} tokens/s"] if speed else []) + [f"stop: {self._stop_reason}"]
        print(", ".join(parts), file=self._err, flush=True)


def _media_blocks(args: argparse.Namespace) -> list[dict]:
    """Content blocks for the `--image` and `--audio` files (the format from the file suffix)."""
    blocks = []
    for kind, paths in (("image", args.image), ("audio", args.audio)):
        for path in paths:
            fmt = pathlib.Path(path).suffix.lstrip(".").lower()
            if not fmt:
                raise UsageError(f"the {kind} file {path} needs a suffix naming its format (e.g. .png, .wav)")
            blocks.append({kind: {"format": fmt, "source": {"bytes": _read_bytes(path, f"{kind} file")}}})
    return blocks


def _chat_params(args: argparse.Namespace) -> dict:
    """The request fields: `--param` pairs, overridden by the named options."""
    params = dict(args.param)
    named = {"max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed,
             "grammar": _read_text(args.grammar, "grammar file") if args.grammar else None}
    params.update({key: value for key, value in named.items() if value is not None})
    return params


def _ask(model: LlamaCppModel, messages: list, args: argparse.Namespace, schema: Any,
         renderer: _Renderer) -> ChatResult:
    """Stream one answer to `messages` through the renderer; the stream is closed however it ends."""
    if schema is not None:
        events = model.structured_output(schema, messages, args.system)
    else:
        events = model.stream(messages, system_prompt=args.system)
    seen = []
    try:
        with contextlib.closing(events):
            for event in events:
                renderer.event(event)
                seen.append(event)
    finally:
        renderer.end_line()
    return collect_result(seen)


def _user_message(text: str, media: list[dict]) -> dict:
    return {"role": "user", "content": [{"text": text}, *media]}


def _read_turn(prompt: bool) -> str | None:
    """Read one line of the conversation; None at end of input."""
    if prompt:
        print("> ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


def _repl(model: LlamaCppModel, args: argparse.Namespace, schema: Any, renderer: _Renderer,
          media: list[dict]) -> int:
    """Hold a conversation; a failed turn is reported and dropped, and the last turn's status is returned."""
    on_terminal = sys.stdin.isatty()
    if on_terminal:
        print(f"{PROG} chat: {REPL_HELP}", file=sys.stderr)
    messages: list[dict] = []
    status = 0
    pending = args.prompt
    while True:
        line = pending if pending is not None else _read_turn(on_terminal)
        pending = None
        command = (line or "").strip()
        if line is None or command in ("/quit", "/exit"):
            return status
        if command == "/reset":
            messages = []
            print("(new conversation)", file=sys.stderr)
        elif command.startswith("/"):  # /help, or a command we do not have
            print(REPL_HELP, file=sys.stderr)
        elif command:
            messages.append(_user_message(line, media if not messages else []))
            try:
                result = _ask(model, messages, args, schema, renderer)
            except LlamaCppError as exc:
                messages.pop()
                status = report(exc, debug=args.debug)
                continue
            messages.append({"role": "assistant", "content": [{"text": result.text}]})
            status = 0


def _cmd_chat(args: argparse.Namespace) -> int:
    """`chat`: one answer, or a conversation."""
    params = _chat_params(args)
    schema = _read_json(args.json_schema, "JSON Schema file") if args.json_schema else None
    media = _media_blocks(args)
    interactive = args.interactive or (args.prompt is None and sys.stdin.isatty())
    prompt = None if interactive else (_read_stdin() if args.prompt in (None, "-") else args.prompt)
    renderer = _Renderer(sys.stdout, sys.stderr, json_lines=args.json, show_reasoning=not args.hide_reasoning,
                         stats=not args.quiet, structured=schema is not None)
    with _client(args, params) as model:
        if interactive:
            return _repl(model, args, schema, renderer, media)
        _ask(model, [_user_message(prompt, media)], args, schema, renderer)
    return 0


# -- health, props, tokens ------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _cmd_health(args: argparse.Namespace) -> int:
    """`health`: the server's state (waiting for it with `--wait`)."""
    with _client(args) as model:
        if args.wait is not None:
            model.wait_until_ready(timeout=args.wait)
        health = model.health()
    if args.json:
        _print_json(health)
    else:
        print(f"{model.base_url}: {health.get('status', health)}")
    return 0


def _enabled(flags: dict) -> str:
    """Name the true flags (without a `supports_` prefix), or say none."""
    names = [name.removeprefix("supports_").replace("_", " ") for name, value in sorted(flags.items()) if value]
    return ", ".join(names) or "none"


def _cmd_props(args: argparse.Namespace) -> int:
    """`props`: the server's key properties."""
    with _client(args) as model:
        props = model.props()
    facts = {field.name: getattr(props, field.name) for field in dataclasses.fields(props) if field.name != "raw"}
    if args.json:
        _print_json(facts)
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
        text = _read_text(args.file, "file")
    else:
        text = _read_stdin() if args.text in (None, "-") else args.text
    with _client(args) as model:
        count = len(model.tokenize(text)) if args.raw else model.count_tokens(text, system_prompt=args.system,
                                                                              estimate=False)
    print(count)
    return 0


# -- serve, demo ----------------------------------------------------------------------------

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
    model_path = args.model or tiny_model_path()
    with LlamaServer(model_path, binary=args.binary, extra_args=shlex.split(args.server_args), port=args.port,
                     startup_timeout=args.startup_timeout) as server:
        print(server.base_url, flush=True)
        print(f"{PROG}: llama-server (pid {server.pid}) serves {model_path} on {server.base_url}; "
              f"Ctrl-C to stop", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            _watch(server)
    print(f"{PROG}: llama-server stopped", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """`demo`: the README's demo, against `--base-url` or a managed server on the tiny model."""
    run_demo(args.base_url or os.environ.get(BASE_URL_ENV) or None, api_key=args.api_key, timeout=args.timeout)
    return 0


# -- the parser -----------------------------------------------------------------------------


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument("--base-url", metavar="URL",
                       help=f"the llama-server (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})")
    group.add_argument("--api-key", metavar="KEY",
                       help="API key (default: $LLAMACPP_API_KEY; prefer it: arguments are visible in ps)")
    group.add_argument("--timeout", type=parse_timeout, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help="seconds allowed to connect and between two bytes of the answer, or "
                            "CONNECT,READ (default: 10,600)")
    return options


def _debug_option(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Add `--debug`; under a command it does not override a `--debug` given before the command."""
    parser.add_argument("--debug", action="store_true", default=False if top_level else argparse.SUPPRESS,
                        help="print tracebacks and the library's debug log")


def _command(commands: Any, name: str, run: Callable[[argparse.Namespace], int], summary: str,
             examples: str, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=summary, parents=list(parents),
                                 epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    _debug_option(parser, top_level=False)
    parser.set_defaults(run=run)
    return parser


def _add_chat(commands: Any, connection: argparse.ArgumentParser) -> None:
    chat = _command(commands, "chat", _cmd_chat, "chat with the model: one answer, or a conversation", f"""\
  {PROG} chat "Tell me a joke."
  echo "Summarize this: ..." | {PROG} chat --max-tokens 200
  {PROG} chat --system "Be terse."           a conversation on a terminal; in it:
      {REPL_HELP}
  {PROG} chat --param top_k=40 --param 'stop=["\\n\\n"]' --seed 1 "Write a haiku."
  {PROG} chat --json-schema pet.schema.json "Describe a pet." | jq .name
  {PROG} chat --image photo.png "What is in this picture?"
  {PROG} chat --json --quiet "hi" | jq -c 'select(.metadata)'
""", [connection])
    chat.add_argument("prompt", nargs="?", metavar="PROMPT",
                      help="the prompt; '-' or none reads stdin, none on a terminal starts a conversation")
    chat.add_argument("-i", "--interactive", action="store_true",
                      help="hold a conversation, reading one message per line (PROMPT is the first one)")
    chat.add_argument("--system", metavar="TEXT", help="the system prompt")
    chat.add_argument("--param", type=parse_param, action="append", default=[], metavar="KEY=VALUE",
                      help="a request field; VALUE is JSON if it parses, else a string (repeatable)")
    chat.add_argument("--max-tokens", type=int, metavar="N", help="the most tokens to generate")
    chat.add_argument("--temperature", type=float, metavar="T", help="sampling temperature")
    chat.add_argument("--seed", type=int, metavar="N", help="sampling seed")
    constraint = chat.add_mutually_exclusive_group()
    constraint.add_argument("--grammar", metavar="FILE", help="constrain the answer with a GBNF grammar file")
    constraint.add_argument("--json-schema", metavar="FILE",
                            help="constrain the answer with a JSON Schema file; print the validated JSON only")
    chat.add_argument("--image", action="append", default=[], metavar="FILE", help="attach an image (repeatable)")
    chat.add_argument("--audio", action="append", default=[], metavar="FILE", help="attach audio (repeatable)")
    chat.add_argument("--hide-reasoning", action="store_true", help="do not print the model's reasoning")
    chat.add_argument("--json", action="store_true", help="print every stream event as a JSON line")
    chat.add_argument("-q", "--quiet", action="store_true", help="no statistics line on stderr")


def _add_info(commands: Any, connection: argparse.ArgumentParser) -> None:
    health = _command(commands, "health", _cmd_health, "show whether the server is ready", f"""\
  {PROG} health
  {PROG} health --wait 60 && {PROG} chat "hi"      wait until the model is loaded
""", [connection])
    health.add_argument("--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for the server to be ready")
    health.add_argument("--json", action="store_true", help="print the answer as JSON")
    props = _command(commands, "props", _cmd_props, "show the server's key properties", f"""\
  {PROG} props
  {PROG} props --json | jq .n_ctx
""", [connection])
    props.add_argument("--json", action="store_true", help="print them as JSON")
    tokens = _command(commands, "tokens", _cmd_tokens, "count tokens exactly, with the server's tokenizer", f"""\
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


def _add_server(commands: Any) -> None:
    serve = _command(commands, "serve", _cmd_serve, "run a managed llama-server until Ctrl-C or SIGTERM", f"""\
  {PROG} serve model.gguf --server-args="-c 4096 -np 2"
  {PROG} serve                                 the tiny test model (gibberish, for trying things out)
  {PROG} serve model.gguf > server.url &       prints the server's URL once it is ready
  until [ -s server.url ]; do sleep 0.5; done
  {PROG} chat --base-url "$(cat server.url)" "hi"; kill %1      SIGTERM stops it cleanly
""")
    serve.add_argument("model", nargs="?", metavar="MODEL",
                       help="a GGUF model file (default: the tiny test model, written to the cache)")
    serve.add_argument("--binary", metavar="PATH",
                       help="the llama-server binary (default: $LLAMA_SERVER_BIN, a cached build, PATH)")
    serve.add_argument("--server-args", default="", metavar="ARGS",
                       help="more llama-server arguments, one shell-quoted string (write --server-args=\"...\")")
    serve.add_argument("--port", type=int, metavar="PORT", help="listen on this port (default: a free one)")
    serve.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long to wait for the server to be ready (default: 60)")
    demo = _command(commands, "demo", _cmd_demo, "run the demo: streaming, a tool call, structured output", f"""\
  {PROG} demo                                  on a managed llama-server with the tiny test model
  {PROG} demo --base-url http://localhost:8080
""")
    demo.add_argument("--base-url", metavar="URL",
                      help=f"use this llama-server (default: ${BASE_URL_ENV}, else start one on the tiny model)")
    demo.add_argument("--api-key", metavar="KEY", help="API key of that server (default: $LLAMACPP_API_KEY)")
    demo.add_argument("--timeout", type=parse_timeout, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                      help="seconds allowed to connect and between two bytes, or CONNECT,READ (default: 10,600)")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the `llamacpp-lite` command."""
    description, _, epilog = (__doc__ or "").partition("\n\n")  # the docstring is the manual
    parser = argparse.ArgumentParser(prog=PROG, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _debug_option(parser, top_level=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    connection = _connection_options()
    _add_chat(commands, connection)
    _add_info(commands, connection)
    _add_server(commands)
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
        return args.run(args)
    except (Exception, KeyboardInterrupt) as exc:
        return report(exc, debug=args.debug)
