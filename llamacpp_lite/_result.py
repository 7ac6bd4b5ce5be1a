"""Pure assembly of a finished answer from stream events, and typed server facts."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping, Optional

from ._tokens import TokenProbability, parse_probabilities

__all__ = ["ChatResult", "ServerProps", "ToolUse", "collect_result"]


@dataclasses.dataclass(frozen=True)
class ToolUse:
    """A tool call the model made.

    Attributes:
        tool_use_id: The call's id (generated when the server sent none).
        name: The tool's name.
        input: The arguments, parsed; None when `raw_input` is not valid JSON (e.g. cut short).
        raw_input: The arguments JSON exactly as streamed.
    """

    tool_use_id: str
    name: str
    input: Any
    raw_input: str


@dataclasses.dataclass(frozen=True)
class ChatResult:
    """One whole answer, assembled from the stream.

    Attributes:
        text: The answer's text.
        reasoning: The reasoning ("thinking") text, empty when there was none.
        tool_uses: The tool calls, in order.
        stop_reason: The Strands stop reason (`end_turn`, `max_tokens`, `tool_use`, ...).
        usage: Strands usage (`inputTokens`, `outputTokens`, `totalTokens`, `cacheReadInputTokens`).
        metrics: `latencyMs` and `timeToFirstByteMs`.
        timings: The server's `timings` (tokens per second for prompt and generation).
        logprobs: Per-token log-probabilities when they were asked for (`logprobs=True` or
            `n_probs`), as the server sent them; else None. `probabilities` is the typed view.
        prompt_progress: The last `promptProgress` of the answer (`processed`, `total`,
            `cached`, `timeMs`) when asked for with `return_progress=True`, else None.
    """

    text: str
    reasoning: str
    tool_uses: tuple[ToolUse, ...]
    stop_reason: str
    usage: Mapping[str, Any]
    metrics: Mapping[str, Any]
    timings: Mapping[str, Any]
    logprobs: Optional[list[Any]] = None
    prompt_progress: Optional[Mapping[str, Any]] = None

    @property
    def probabilities(self) -> Optional[tuple[TokenProbability, ...]]:
        """`logprobs`, typed: per token its text, log-probability and top alternatives; or None.

        Raises:
            StreamError: When the server's entries have another shape.
        """
        return None if self.logprobs is None else parse_probabilities(self.logprobs, "the chat logprobs")


def collect_result(events: Iterable[Mapping[str, Any]]) -> ChatResult:
    """Consume stream events and return the assembled `ChatResult`."""
    text: list[str] = []
    reasoning: list[str] = []
    tools: list[list[Any]] = []  # [id, name, [fragments]]
    stop_reason = "end_turn"
    meta: Mapping[str, Any] = {}
    progress = None
    for event in events:
        if "contentBlockDelta" in event:
            delta = event["contentBlockDelta"]["delta"]
            if "text" in delta:
                text.append(delta["text"])
            elif "reasoningContent" in delta:
                reasoning.append(delta["reasoningContent"].get("text", ""))
            elif "toolUse" in delta:
                tools[-1][2].append(delta["toolUse"]["input"])
        elif "contentBlockStart" in event:
            tool = event["contentBlockStart"]["start"].get("toolUse")
            if tool:
                tools.append([tool["toolUseId"], tool["name"], []])
        elif "messageStop" in event:
            stop_reason = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            meta = event["metadata"]
        elif "promptProgress" in event:
            progress = event["promptProgress"]
    return ChatResult(
        text="".join(text),
        reasoning="".join(reasoning),
        tool_uses=tuple(_tool_use(*tool) for tool in tools),
        stop_reason=stop_reason,
        usage=meta.get("usage", {}),
        metrics=meta.get("metrics", {}),
        timings=meta.get("timings", {}),
        logprobs=meta.get("logprobs"),
        prompt_progress=progress,
    )


def _tool_use(tool_use_id: str, name: str, fragments: list[str]) -> ToolUse:
    raw = "".join(fragments)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = None
    return ToolUse(tool_use_id=tool_use_id, name=name, input=parsed, raw_input=raw)


@dataclasses.dataclass(frozen=True)
class ServerProps:
    """What `GET /props` says about the server, typed.

    Attributes:
        n_ctx: The context size of one slot (`default_generation_settings.n_ctx`); None when
            unknown, e.g. from a router's own `/props` (ask with `props(model_id)` there).
        total_slots: How many requests the server runs at once.
        modalities: Input modalities of the loaded model (`vision`, `audio`, `video` -> bool).
        chat_template_caps: What the chat template supports (`supports_tool_calls`, ...).
        build_info: The server build, e.g. `b1-7e4c0a9`.
        model_path: The model file the server loaded.
        raw: The whole answer.
    """

    n_ctx: Optional[int]
    total_slots: Optional[int]
    modalities: Mapping[str, bool]
    chat_template_caps: Mapping[str, Any]
    build_info: Optional[str]
    model_path: Optional[str]
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ServerProps":
        """Build from the decoded `/props` answer, tolerating missing fields."""
        settings = data.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") if isinstance(settings, Mapping) else None
        return cls(
            n_ctx=n_ctx or None,
            total_slots=data.get("total_slots"),
            modalities=dict(data.get("modalities") or {}),
            chat_template_caps=dict(data.get("chat_template_caps") or {}),
            build_info=data.get("build_info"),
            model_path=data.get("model_path"),
            raw=data,
        )

    @property
    def is_router(self) -> bool:
        """True for the props of a llama-server router itself (`role: "router"`), which has no model."""
        return self.raw.get("role") == "router"
