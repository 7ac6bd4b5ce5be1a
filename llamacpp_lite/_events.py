"""Pure translation of llama-server stream chunks into Strands `StreamEvent` dicts.

The event shapes (one key per dict) are built only by the small constructors below.
Sequence produced for one answer::

    messageStart
    promptProgress...                                                                with return_progress
    [contentBlockStart, contentBlockDelta{reasoningContent}..., contentBlockStop]    reasoning
    [contentBlockStart, contentBlockDelta{text}..., contentBlockStop]                text
    [contentBlockStart{toolUse}, contentBlockDelta{toolUse.input}..., contentBlockStop] x calls
    messageStop{stopReason}
    metadata{usage, metrics, timings[, logprobs]}

Blocks never interleave: a change of kind (reasoning, text, a tool call of another index)
closes the open block first. Tool-call arguments are passed on fragment by fragment; their
concatenation is the arguments JSON string.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping

from ._errors import StreamError

__all__ = ["STOP_REASONS", "StreamedOutput", "translate_chunks"]

StreamEvent = Dict[str, Any]
"""One of the Strands StreamEvent shapes (one key per dict); see the module docstring."""

STOP_REASONS: Mapping[str, str] = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",  # not a server value: "stop" caused by a `stop` string
    "length": "max_tokens",
    "tool_calls": "tool_use",
}
"""llama-server `finish_reason` -> Strands `stopReason`."""

def prompt_progress(progress: Mapping[str, Any]) -> dict[str, Any]:
    """Return a `promptProgress` event from the server's `prompt_progress` object.

    Raises:
        TypeError: When a count is not an int or the time not a number.
    """
    total, cached, processed, time_ms = (progress.get(key) for key in ("total", "cache", "processed", "time_ms"))
    if not all(type(value) is int for value in (total, cached, processed)):
        raise TypeError("prompt_progress counts are not integers")
    if not isinstance(time_ms, (int, float)) or isinstance(time_ms, bool):
        raise TypeError("prompt_progress.time_ms is not a number")
    return {"promptProgress": {"processed": processed, "total": total, "cached": cached, "timeMs": float(time_ms)}}


def message_start() -> StreamEvent:
    """Return a `messageStart` event."""
    return {"messageStart": {"role": "assistant"}}


def block_start(tool_use_id: str | None = None, name: str | None = None) -> StreamEvent:
    """Return a `contentBlockStart` event; with a tool id and name it opens a tool-use block."""
    if tool_use_id is None:
        return {"contentBlockStart": {"start": {}}}
    return {"contentBlockStart": {"start": {"toolUse": {"toolUseId": tool_use_id, "name": name}}}}


def text_delta(text: str) -> StreamEvent:
    """Return a text `contentBlockDelta` event."""
    return {"contentBlockDelta": {"delta": {"text": text}}}


def reasoning_delta(text: str) -> StreamEvent:
    """Return a reasoning `contentBlockDelta` event."""
    return {"contentBlockDelta": {"delta": {"reasoningContent": {"text": text}}}}


def tool_input_delta(fragment: str) -> StreamEvent:
    """Return a tool-use `contentBlockDelta` event carrying a fragment of the arguments JSON."""
    return {"contentBlockDelta": {"delta": {"toolUse": {"input": fragment}}}}


def block_stop() -> StreamEvent:
    """Return a `contentBlockStop` event."""
    return {"contentBlockStop": {}}


def message_stop(stop_reason: str) -> StreamEvent:
    """Return a `messageStop` event."""
    return {"messageStop": {"stopReason": stop_reason}}


def _count(counts: Mapping[str, Any], name: str) -> int | None:
    """Return a token count from the server's usage or timings; None when absent or not an int."""
    value = counts.get(name)
    return value if type(value) is int else None


def metadata(
    usage: Mapping[str, Any] | None,
    timings: Mapping[str, Any] | None,
    latency_ms: int,
    first_byte_ms: int | None,
    logprobs: list[Any] | None = None,
) -> StreamEvent:
    """Return the `metadata` event: Strands usage and metrics, plus the server's `timings`.

    `usage` falls back to the token counts in `timings` when the server sent no usage.
    """
    usage = usage or {}
    timings = timings or {}
    prompt = _count(usage, "prompt_tokens")
    if prompt is None:
        prompt = (_count(timings, "prompt_n") or 0) + (_count(timings, "cache_n") or 0)
    completion = _count(usage, "completion_tokens")
    if completion is None:
        completion = _count(timings, "predicted_n") or 0
    total = _count(usage, "total_tokens")
    strands_usage = {
        "inputTokens": prompt,
        "outputTokens": completion,
        "totalTokens": prompt + completion if total is None else total,
    }
    details = usage.get("prompt_tokens_details")
    cached = _count(details, "cached_tokens") if isinstance(details, Mapping) else None
    if cached is not None:
        strands_usage["cacheReadInputTokens"] = cached
    metrics: dict[str, Any] = {"latencyMs": latency_ms}
    if first_byte_ms is not None:
        metrics["timeToFirstByteMs"] = first_byte_ms
    event: dict[str, Any] = {"usage": strands_usage, "metrics": metrics, "timings": dict(timings)}
    if logprobs is not None:
        event["logprobs"] = logprobs
    return {"metadata": event}


class _Blocks:
    """Which content block is open, so that kinds never interleave."""

    TEXT = "text"
    REASONING = "reasoning"

    def __init__(self, keep: "StreamedOutput | None" = None) -> None:
        self.open: Any = None  # TEXT, REASONING, a tool-call index (int), or None
        self.closed_tools: set[int] = set()
        self.tool_names: dict[int, list[Any]] = {}  # index -> [id, name] of the tool calls seen
        self.pending_tool: Any = None  # the tool index whose start waits for its first arguments
        self.arguments: dict[int, list[str]] | None = None  # index -> argument fragments, when kept
        if keep is not None:
            keep.tool_names = self.tool_names
            self.arguments = keep.arguments

    def switch(self, kind: Any) -> Iterator[StreamEvent]:
        """Close the open block, then open `kind` (a tool block opens once its name is final)."""
        yield from self.close()
        self.open = kind
        if not isinstance(kind, int):
            yield block_start()

    def close(self) -> Iterator[StreamEvent]:
        """Close the open block, if any."""
        if self.pending_tool is not None:
            yield from self.start_pending_tool()
        if self.open is not None:
            if isinstance(self.open, int):
                self.closed_tools.add(self.open)
            yield block_stop()
        self.open = None

    def start_pending_tool(self) -> Iterator[StreamEvent]:
        """Open the tool-use block whose start was held back until its name was final."""
        tool_use_id, name = self.tool_names[self.pending_tool]
        if not isinstance(name, str) or not name:
            raise ValueError(f"tool call {self.pending_tool} has no function name")
        self.pending_tool = None
        yield block_start(tool_use_id, name)

    def tool_call(self, call: Mapping[str, Any]) -> Iterator[StreamEvent]:
        """Translate one `delta.tool_calls[]` entry."""
        index = call.get("index", 0)
        if type(index) is not int:
            raise TypeError("tool call index is not an integer")
        function = call.get("function") or {}
        name = function.get("name")
        arguments = function.get("arguments")
        if arguments is not None and type(arguments) is not str:
            raise TypeError("tool call arguments is not a string")
        call_id = call.get("id")
        # Some OpenAI-compatible bridges send parallel calls under one index; a new id tells them apart.
        known = self.tool_names.get(index)
        new_id = isinstance(call_id, str) and bool(call_id) and known is not None and call_id != known[0]
        if index in self.closed_tools and not new_id:
            raise ValueError(f"tool call {index} continued after another block began")
        if index != self.open or new_id:
            yield from self.switch(index)
            self.closed_tools.discard(index)
            self.pending_tool = index
            self.tool_names[index] = [call_id or f"tooluse_{uuid.uuid4().hex}", name]
        elif name and self.pending_tool == index:
            # The server may resend a longer name before any arguments: the later one wins.
            self.tool_names[index] = [call.get("id") or self.tool_names[index][0], name]
        if arguments:
            if self.pending_tool is not None:
                yield from self.start_pending_tool()
            if self.arguments is not None:
                self.arguments.setdefault(index, []).append(arguments)
            yield tool_input_delta(arguments)


class StreamedOutput:
    """What an answer has streamed so far, kept for error reports (`ToolCallParseError`).

    Filled by `translate_chunks(..., keep=...)` as the events pass; costs memory for the whole
    answer, so it is meant for requests whose output the server parses (tools or a schema).
    """

    def __init__(self) -> None:
        self.text: list[str] = []  # text pieces
        self.arguments: dict[int, list[str]] = {}  # tool-call index -> argument fragments
        self.tool_names: dict[int, list[Any]] = {}  # tool-call index -> [id, name] (shared with the translator)

    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls so far: dicts of `id`, `name` and `arguments` (the fragments joined)."""
        return [{"id": tool_use_id, "name": name, "arguments": "".join(self.arguments.get(index, ()))}
                for index, (tool_use_id, name) in self.tool_names.items()]


def translate_chunks(
    chunks: Iterable[Any],
    *,
    started: float,
    clock: Callable[[], float] = time.perf_counter,
    keep: StreamedOutput | None = None,
) -> Iterator[StreamEvent]:
    """Translate decoded stream chunks into Strands stream events.

    Reads to the end of `chunks`: usage and `timings` may arrive after the finish chunk.

    Args:
        chunks: Decoded JSON payloads of the stream, in order (without `[DONE]`).
        started: `clock()` when the request was sent (for `latencyMs` / `timeToFirstByteMs`).
        clock: A monotonic clock in seconds.
        keep: Where to keep the text and tool calls as they pass, if anywhere.

    Yields:
        Strands `StreamEvent` dicts.

    Raises:
        StreamError: For a chunk of the wrong shape, or a stream without a finish reason.
    """
    blocks = _Blocks(keep)
    kept_text = keep.text if keep is not None else None
    kept_arguments = blocks.arguments
    first_byte_ms = None
    finish_reason = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    logprobs: list[Any] | None = None
    yield message_start()
    for chunk in chunks:
        if first_byte_ms is None:
            first_byte_ms = int((clock() - started) * 1000)
        try:
            choices = chunk["choices"]
            if choices:
                choice = choices[0]
                delta = choice["delta"]
                # Hot path: most chunks carry one token of text.
                content = delta.get("content")
                if content:
                    if type(content) is not str:
                        raise TypeError("delta.content is not a string")
                    if blocks.open != _Blocks.TEXT:
                        yield from blocks.switch(_Blocks.TEXT)
                    if kept_text is not None:
                        kept_text.append(content)
                    yield {"contentBlockDelta": {"delta": {"text": content}}}  # text_delta(), inlined: hot
                reasoning = delta.get("reasoning_content")
                if reasoning:
                    if type(reasoning) is not str:
                        raise TypeError("delta.reasoning_content is not a string")
                    if blocks.open != _Blocks.REASONING:
                        yield from blocks.switch(_Blocks.REASONING)
                    yield reasoning_delta(reasoning)
                tool_calls = delta.get("tool_calls")
                if tool_calls:
                    for call in tool_calls:
                        # Hot path: a further fragment of the open call's arguments, and nothing else.
                        function = call.get("function")
                        if (call.get("index", 0) == blocks.open and blocks.pending_tool is None
                                and len(call) == 2 and function and len(function) == 1):
                            arguments = function.get("arguments")
                            if type(arguments) is str:
                                if arguments:
                                    if kept_arguments is not None:
                                        kept_arguments.setdefault(blocks.open, []).append(arguments)
                                    yield {"contentBlockDelta": {"delta": {"toolUse": {"input": arguments}}}}
                                continue
                        yield from blocks.tool_call(call)
                if "logprobs" in choice and choice["logprobs"]:
                    logprobs = logprobs if logprobs is not None else []
                    logprobs.extend(choice["logprobs"].get("content") or ())
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
                    if type(finish_reason) is not str:
                        raise TypeError("finish_reason is not a string")
                    # Present when the request asked for `verbose` (see _wire): names a stop string.
                    verbose = chunk.get("__verbose")
                    if verbose and verbose.get("stop_type") == "word" and finish_reason == "stop":
                        finish_reason = "stop_sequence"
            elif type(choices) is not list:
                raise TypeError("choices is not a list")
            if "prompt_progress" in chunk:
                yield prompt_progress(chunk["prompt_progress"])
            if "usage" in chunk and chunk["usage"]:
                usage = dict(chunk["usage"])
            if "timings" in chunk and chunk["timings"]:
                timings = dict(chunk["timings"])
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise StreamError(f"malformed stream chunk ({type(exc).__name__}: {exc})", payload=json.dumps(chunk)) from exc
    if finish_reason is None:
        raise StreamError("the stream ended without a finish reason")
    try:
        yield from blocks.close()
    except ValueError as exc:
        raise StreamError(str(exc)) from exc
    stop_reason = STOP_REASONS.get(finish_reason, "end_turn")
    if blocks.tool_names and stop_reason == "end_turn":
        stop_reason = "tool_use"
    yield message_stop(stop_reason)
    latency_ms = int((clock() - started) * 1000)
    yield metadata(usage, timings, latency_ms, first_byte_ms, logprobs)
