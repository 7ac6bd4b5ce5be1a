"""`chat`: one answer, or a conversation, streamed to the terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
from typing import Any, Mapping, TextIO

from .._content import AUDIO_FORMATS, IMAGE_FORMATS
from .._errors import LlamaCppError
from .._model import LlamaCppModel
from .._result import ChatResult, collect_result
from ._common import (
    PROG,
    REPL_HELP,
    UsageError,
    client,
    command,
    generation_options,
    generation_params,
    read_bytes,
    read_json,
    read_stdin,
    report,
)

PROGRESS_MIN_TOKENS = 500
"""The progress bar shows only for prompts with at least this many tokens to process (not cached)."""


class _ProgressBar:
    """A one-line bar on a terminal (stderr) while the server processes the prompt; erased when done.

    Args:
        err: The terminal.
        min_tokens: Prompts with fewer tokens to process get no bar.
    """

    WIDTH = 30

    def __init__(self, err: TextIO, min_tokens: int = PROGRESS_MIN_TOKENS) -> None:
        self._err = err
        self._min_tokens = min_tokens
        self.shown = False

    def update(self, progress: Mapping[str, Any]) -> None:
        """Draw the bar for one `promptProgress` event."""
        todo = progress["total"] - progress["cached"]
        if todo < self._min_tokens:
            return
        fraction = min(1.0, max(0.0, (progress["processed"] - progress["cached"]) / todo))
        filled = int(fraction * self.WIDTH)
        self._err.write(f"\rprompt [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} "
                        f"{progress['processed']}/{progress['total']} tokens, {progress['timeMs'] / 1000:.1f} s\x1b[K")
        self._err.flush()
        self.shown = True

    def erase(self) -> None:
        """Remove the bar, if it is shown."""
        if self.shown:
            self._err.write("\r\x1b[K")
            self._err.flush()
            self.shown = False


class _Renderer:
    """Print stream events: text as it arrives, reasoning set apart, or every event as JSON.

    Args:
        out: Where the answer goes (stdout).
        err: Where the statistics line goes (stderr).
        json_lines: Print every event as one JSON line instead of the text.
        show_reasoning: Print the reasoning (dimmed on a terminal, else prefixed per line).
        stats: Print the token count and speed on `err` after each answer.
        structured: The text is JSON for a schema: print only the validated output.
        progress: Show a progress bar on `err` while a long prompt is processed (for a terminal).
    """

    REASONING_PREFIX = "reasoning: "
    DIM, RESET = "\x1b[2m", "\x1b[0m"

    def __init__(self, out: TextIO, err: TextIO, *, json_lines: bool, show_reasoning: bool, stats: bool,
                 structured: bool, progress: bool = False) -> None:
        self._out, self._err = out, err
        self._json_lines = json_lines
        self._show_reasoning = show_reasoning
        self._stats = stats
        self._structured = structured
        self._dim = out.isatty() and not os.environ.get("NO_COLOR")
        self._line_open = False  # the cursor is in the middle of a line on `out`
        self._stop_reason = "end_turn"
        self.progress = _ProgressBar(err) if progress else None

    def event(self, event: dict[str, Any]) -> None:
        """Print one event."""
        if self.progress is not None:
            if "promptProgress" in event:
                self.progress.update(event["promptProgress"])
                return
            self.progress.erase()
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

    def _delta(self, delta: dict[str, Any]) -> None:
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
        """Finish a partly written line (at the end of a block, or when interrupted); erase the bar."""
        if self.progress is not None:
            self.progress.erase()
        if self._line_open:
            self._write("\n")

    def _print_stats(self, metadata: dict[str, Any]) -> None:
        tokens = metadata.get("usage", {}).get("outputTokens", 0)
        speed = metadata.get("timings", {}).get("predicted_per_second")
        parts = [f"{tokens} tokens"] + ([f"{speed:.1f} tokens/s"] if speed else []) + [f"stop: {self._stop_reason}"]
        print(", ".join(parts), file=self._err, flush=True)


def _media_blocks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Content blocks for the `--image` and `--audio` files (the format from the file suffix)."""
    blocks = []
    for kind, paths in (("image", args.image), ("audio", args.audio)):
        for path in paths:
            fmt = pathlib.Path(path).suffix.lstrip(".").lower()
            if not fmt:
                raise UsageError(f"the {kind} file {path} needs a suffix naming its format (e.g. .png, .wav)")
            blocks.append({kind: {"format": fmt, "source": {"bytes": read_bytes(path, f"{kind} file")}}})
    return blocks


def _ask(model: LlamaCppModel, messages: list[dict[str, Any]], args: argparse.Namespace, schema: Any,
         renderer: _Renderer) -> ChatResult:
    """Stream one answer to `messages` through the renderer; the stream is closed however it ends."""
    extra: dict[str, Any] = {"return_progress": True} if renderer.progress is not None else {}
    if schema is not None:
        events = model.structured_output(schema, messages, args.system, **extra)
    else:
        events = model.stream(messages, system_prompt=args.system, **extra)
    seen = []
    try:
        with contextlib.closing(events):
            for event in events:
                renderer.event(event)
                seen.append(event)
    finally:
        renderer.end_line()
    return collect_result(seen)


def _user_message(text: str, media: list[dict[str, Any]]) -> dict[str, Any]:
    """The media first, then the question (as in a Strands block holding both)."""
    return {"role": "user", "content": [*media, {"text": text}]}


def _read_turn(prompt: bool) -> str | None:
    """Read one line of the conversation; None at end of input."""
    if prompt:
        print("> ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


def _repl(model: LlamaCppModel, args: argparse.Namespace, schema: Any, renderer: _Renderer,
          media: list[dict[str, Any]]) -> int:
    """Hold a conversation; a failed turn is reported and dropped, and the last turn's status is returned."""
    on_terminal = sys.stdin.isatty()
    if on_terminal:
        print(f"{PROG} chat: {REPL_HELP}", file=sys.stderr)
    messages: list[dict[str, Any]] = []
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
    params = generation_params(args)
    schema = read_json(args.json_schema, "JSON Schema file") if args.json_schema else None
    media = _media_blocks(args)
    interactive = args.interactive or (args.prompt is None and sys.stdin.isatty())
    prompt = None if interactive else (read_stdin() if args.prompt in (None, "-") else args.prompt)
    renderer = _Renderer(sys.stdout, sys.stderr, json_lines=args.json, show_reasoning=not args.hide_reasoning,
                         stats=not args.quiet, structured=schema is not None,
                         progress=sys.stderr.isatty() and not args.no_progress and not args.json)
    with client(args, params) as model:
        if interactive:
            return _repl(model, args, schema, renderer, media)
        _ask(model, [_user_message(prompt or "", media)], args, schema, renderer)
    return 0


def add(commands: Any, connection: argparse.ArgumentParser) -> None:
    chat = command(commands, "chat", _cmd_chat, "chat with the model: one answer, or a conversation", f"""\
  {PROG} chat "Tell me a joke."
  echo "Summarize this: ..." | {PROG} chat --max-tokens 200
  {PROG} chat --system "Be terse."           a conversation on a terminal; in it:
      {REPL_HELP}
  {PROG} chat --param top_k=40 --param 'stop=["\\n\\n"]' --seed 1 "Write a haiku."
  {PROG} chat --json-schema pet.schema.json "Describe a pet." | jq .name
  {PROG} chat --image photo.png "What is in this picture?"
  {PROG} chat --image chart.jpg --audio question.wav "Answer the question about the chart."
  {PROG} chat --json --quiet "hi" | jq -c 'select(.metadata)'
""", [connection])
    chat.add_argument("prompt", nargs="?", metavar="PROMPT",
                      help="the prompt; '-' or none reads stdin, none on a terminal starts a conversation")
    chat.add_argument("-i", "--interactive", action="store_true",
                      help="hold a conversation, reading one message per line (PROMPT is the first one)")
    chat.add_argument("--system", metavar="TEXT", help="the system prompt")
    generation_options(chat, schema_help="constrain the answer with a JSON Schema file; print the validated JSON only")
    chat.add_argument("--image", action="append", default=[], metavar="FILE",
                      help=f"attach an image, its format from the suffix: {', '.join(IMAGE_FORMATS)} (repeatable)")
    chat.add_argument("--audio", action="append", default=[], metavar="FILE",
                      help=f"attach audio, its format from the suffix: {', '.join(sorted(set(AUDIO_FORMATS.values())))}"
                           " (repeatable)")
    chat.add_argument("--hide-reasoning", action="store_true", help="do not print the model's reasoning")
    chat.add_argument("--json", action="store_true", help="print every stream event as a JSON line")
    chat.add_argument("-q", "--quiet", action="store_true", help="no statistics line on stderr")
    chat.add_argument("--no-progress", action="store_true",
                      help=f"no progress bar while the server reads a long prompt (shown on a terminal for "
                           f"{PROGRESS_MIN_TOKENS}+ uncached tokens)")
