"""Pure translation of Strands-shaped input into llama-server's chat-completions request body.

No network and no configuration state: every function takes what it needs and returns a new
value, so the exact JSON a call sends can be unit-tested. Content blocks are translated by
`_content`; this module places them in messages and adds tools, tool choice and params.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ._content import STRUCTURAL_KEYS, as_content, block_parts, dumps
from ._errors import InvalidRequestError

__all__ = ["build_chat_request", "format_messages", "format_tools", "to_messages"]

_RESERVED_PARAMS = frozenset({"messages", "model", "stream", "tools"})
_STRUCTURAL_BY_ROLE = {
    "user": frozenset({"toolResult"}),
    "assistant": frozenset({"toolUse", "reasoningContent"}),
    "system": frozenset(),
}
_HOME = {"toolUse": "an assistant", "reasoningContent": "an assistant", "toolResult": "a user"}
_TOOL_CHOICE_SHAPES = "{'auto': {}}, {'any': {}} or {'tool': {'name': ...}}"
_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}


def _list(value: Any, what: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise InvalidRequestError(f"{what} must be a list, got {type(value).__name__}")
    return value


def to_messages(messages: Any) -> list[Any]:
    """Return `messages` as a list of Strands messages; a plain string is one user message.

    Raises:
        InvalidRequestError: When `messages` is neither a string nor a list of messages.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": [{"text": messages}]}]
    return list(_list(messages, "messages (or a string)"))


def _tool_call(tool_use: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool_use, Mapping):
        raise InvalidRequestError(f"{where}: toolUse must be a mapping, got {type(tool_use).__name__}")
    tool_use_id, name = tool_use.get("toolUseId"), tool_use.get("name")
    if not isinstance(tool_use_id, str) or not isinstance(name, str):
        raise InvalidRequestError(f"{where}: toolUse needs a string 'toolUseId' and 'name'")
    arguments = dumps(tool_use.get("input", {}), f"{where}: toolUse {name!r} input")
    return {"id": tool_use_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_message(result: Any, where: str) -> dict[str, Any]:
    if not isinstance(result, Mapping) or not isinstance(result.get("toolUseId"), str):
        raise InvalidRequestError(f"{where}: toolResult must be a mapping with a string 'toolUseId'")
    where = f"{where} toolResult {result['toolUseId']!r}"
    blocks = _list(result.get("content", []), f"{where}: content")
    parts = [part for block in blocks for part in block_parts(block, where)]
    return {"role": "tool", "tool_call_id": result["toolUseId"], "content": as_content(parts) if parts else ""}


def _reasoning_text(reasoning: Any, where: str) -> str:
    """The text of a reasoningContent block; redacted reasoning has no llama-server field."""
    if isinstance(reasoning, Mapping):
        text_block = reasoning.get("reasoningText")
        text = text_block.get("text") if isinstance(text_block, Mapping) else None
        if isinstance(text, str):
            return text
        if text_block is None and isinstance(reasoning.get("redactedContent"), (bytes, bytearray)):
            return ""
    raise InvalidRequestError(
        f"{where}: reasoningContent must be {{'reasoningText': {{'text': str}}}} or {{'redactedContent': bytes}}"
    )


def _assistant_message(parts: list[dict[str, Any]], tool_calls: list[dict[str, Any]],
                       reasoning: str) -> list[dict[str, Any]]:
    """The assistant message, or none when it has nothing to send (e.g. only redacted reasoning)."""
    if not (parts or tool_calls or reasoning):
        return []
    message: dict[str, Any] = {"role": "assistant"}
    if parts or not tool_calls:
        message["content"] = as_content(parts) if parts else ""  # the server wants content or tool calls
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = reasoning  # the chat template decides whether to render it
    return [message]


def _format_message(index: int, message: Any) -> list[dict[str, Any]]:
    """Translate one Strands message into zero or more chat messages (tool results are their own)."""
    if not isinstance(message, Mapping):
        raise InvalidRequestError(f"message {index} must be a mapping with 'role' and 'content'")
    role = message.get("role")
    if not isinstance(role, str) or role not in _STRUCTURAL_BY_ROLE:
        raise InvalidRequestError(f"message {index}: role must be 'user', 'assistant' or 'system', got {role!r:.40}")
    where = f"message {index} ({role})"
    blocks = message.get("content")
    blocks = _list([{"text": blocks}] if isinstance(blocks, str) else blocks, f"{where}: content")
    allowed = _STRUCTURAL_BY_ROLE[role]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for block in blocks:
        if isinstance(block, Mapping):
            misplaced = STRUCTURAL_KEYS.intersection(block).difference(allowed)
            if misplaced:
                key = min(misplaced)
                raise InvalidRequestError(f"{where}: a {key!r} block belongs in {_HOME[key]} message")
            if "toolUse" in block:
                tool_calls.append(_tool_call(block["toolUse"], where))
            if "toolResult" in block:
                out.append(_tool_message(block["toolResult"], where))
            if "reasoningContent" in block:
                reasoning.append(_reasoning_text(block["reasoningContent"], where))
        parts.extend(block_parts(block, where, allowed))
    if role == "assistant":
        return _assistant_message(parts, tool_calls, "".join(reasoning))
    if parts:
        out.append({"role": role, "content": as_content(parts)})
    elif not out:
        raise InvalidRequestError(f"{where} has no content to send")
    return out


def _system_text(system_prompt: Any, system_prompt_content: Any) -> str | None:
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidRequestError(f"system_prompt must be a string, got {type(system_prompt).__name__}")
    if system_prompt_content is None:
        return system_prompt
    texts = []
    for block in _list(system_prompt_content, "system_prompt_content"):
        if not isinstance(block, Mapping):
            raise InvalidRequestError(f"system_prompt_content blocks must be mappings, got {type(block).__name__}")
        for key, value in block.items():
            if key == "text" and isinstance(value, str):
                texts.append(value)
            elif key != "cachePoint":
                raise InvalidRequestError(f"system_prompt_content blocks carry a string 'text' or a 'cachePoint', "
                                          f"got {key!r:.40} holding {type(value).__name__}")
    return "".join(texts)


def format_messages(
    messages: Sequence[Any],
    system_prompt: str | None = None,
    system_prompt_content: Iterable[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Translate Strands messages and a system prompt into chat-completions messages.

    The system prompt comes first: `system_prompt_content` (Strands system blocks, joined, its
    `cachePoint` blocks skipped) when given, else `system_prompt`. `system` messages inside
    `messages` are sent as they are, where they are.

    Args:
        messages: Strands messages (roles `user`, `assistant`, `system`).
        system_prompt: A system prompt.
        system_prompt_content: Strands system content blocks (win over `system_prompt`).

    Returns:
        The chat-completions messages.

    Raises:
        InvalidRequestError: For a message or block that cannot be sent.
    """
    formatted: list[dict[str, Any]] = []
    system_text = _system_text(system_prompt, system_prompt_content)
    if system_text:
        formatted.append({"role": "system", "content": system_text})
    for index, message in enumerate(_list(messages, "messages")):
        formatted.extend(_format_message(index, message))
    return formatted


def format_tools(tool_specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Translate Strands tool specs (`inputSchema: {"json": schema}`) into OpenAI function tools.

    Raises:
        InvalidRequestError: For a spec that is not a mapping, or lacks a string name, or whose
            description or input schema has the wrong type.
    """
    tools = []
    for index, spec in enumerate(_list(tool_specs, "tool_specs")):
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise InvalidRequestError(f"tool spec {index} must be a mapping with a non-empty string 'name'")
        name, description = spec["name"], spec.get("description", "")
        schema = spec.get("inputSchema", {"json": _EMPTY_SCHEMA})
        schema = schema.get("json", schema) if isinstance(schema, Mapping) else schema
        if not isinstance(description, (str, type(None))) or not isinstance(schema, Mapping):
            raise InvalidRequestError(
                f"tool spec {name!r}: description must be a string and inputSchema {{'json': <JSON Schema mapping>}}"
            )
        function = {"name": name, "description": description or "", "parameters": schema}
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(tool_choice: Any) -> tuple[str | None, str | None]:
    """Return the `tool_choice` string llama-server understands and the one tool named, if any."""
    if tool_choice is None:
        return None, None
    if isinstance(tool_choice, Mapping) and len(tool_choice) == 1:
        (kind, value), = tool_choice.items()
        if kind in ("auto", "any") and isinstance(value, Mapping):
            return ("auto" if kind == "auto" else "required"), None
        if kind == "tool" and isinstance(value, Mapping) and isinstance(value.get("name"), str):
            # llama-server ignores a named-function object, so offer only that tool and require a call.
            return "required", value["name"]
    raise InvalidRequestError(f"tool_choice must be {_TOOL_CHOICE_SHAPES}, got {tool_choice!r:.80}")


def build_chat_request(
    messages: Any,
    *,
    model_id: str,
    params: Mapping[str, Any],
    tool_specs: Sequence[Mapping[str, Any]] | None = None,
    system_prompt: str | None = None,
    system_prompt_content: Iterable[Mapping[str, Any]] | None = None,
    tool_choice: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the JSON body of a streaming `/v1/chat/completions` request.

    Args:
        messages: Strands messages, or a string standing for one user message.
        model_id: The `model` field.
        params: Normalized request fields, all sent at the top level of the body.
        tool_specs: Strands tool specs to offer.
        system_prompt: A system prompt.
        system_prompt_content: Strands system content blocks (win over `system_prompt`).
        tool_choice: Strands tool choice, translated to what llama-server enforces.

    Returns:
        A new dict, ready for `json=`.

    Raises:
        InvalidRequestError: For any input the server would reject or silently ignore; this is
            the only exception it raises.
    """
    if not isinstance(params, Mapping):
        raise InvalidRequestError(f"params must be a mapping, got {type(params).__name__}")
    reserved = _RESERVED_PARAMS.intersection(params)
    if reserved:
        raise InvalidRequestError(f"{sorted(reserved)} cannot be set through params; use the call's arguments")
    if params.get("n", 1) != 1:
        raise InvalidRequestError("n must be 1: a stream of Strands events follows a single choice")
    if "grammar" in params and "json_schema" in params:
        raise InvalidRequestError("grammar and json_schema cannot be used together")
    stream_options = params.get("stream_options", {})
    if not isinstance(stream_options, Mapping):
        raise InvalidRequestError(f"stream_options must be a mapping, got {type(stream_options).__name__}")
    choice, named = _tool_choice(tool_choice)
    tools = format_tools(tool_specs) if tool_specs is not None else []
    if named is not None:
        tools = [tool for tool in tools if tool["function"]["name"] == named]
        if not tools:
            raise InvalidRequestError(f"tool_choice names {named!r}, which is not among the tool specs")
    body: dict[str, Any] = {
        "model": model_id,
        "messages": format_messages(to_messages(messages), system_prompt, system_prompt_content),
    }
    body.update(params)
    if params.get("stop") and "verbose" not in params:
        # Only the final chunk of a verbose stream says whether a stop string ended the answer
        # (`stop_type: "word"`), which becomes the stop reason `stop_sequence`.
        body["verbose"] = True
    if tools:
        if "grammar" in params:
            raise InvalidRequestError("tools cannot be combined with a custom grammar (llama-server refuses it)")
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
    body["stream"] = True
    body["stream_options"] = {**stream_options, "include_usage": True}
    return body
