"""Pure translation of Strands-shaped input into llama-server's chat-completions request body.

No network and no configuration state: every function takes what it needs and returns a new
value, so the exact JSON a call sends can be unit-tested.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable, Mapping, Sequence

from ._errors import InvalidRequestError

__all__ = ["build_chat_request", "format_messages", "format_tools", "to_messages"]

TEXT_DOCUMENT_FORMATS = frozenset({"txt", "md", "csv", "html", "json"})
"""Document formats inlined as text; any other format (pdf, docx, ...) is refused."""

_IMAGE_MIME = {"jpg": "jpeg"}
_RESERVED_PARAMS = frozenset({"messages", "model", "stream", "tools"})
_TOOL_CHOICE_STRINGS = {"auto": "auto", "any": "required"}


def to_messages(messages: Any) -> list[Mapping[str, Any]]:
    """Return `messages` as a list of Strands messages; a plain string is one user message.

    Raises:
        InvalidRequestError: When `messages` is neither a string nor a list of messages.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": [{"text": messages}]}]
    if not isinstance(messages, (list, tuple)):
        raise InvalidRequestError(f"messages must be a string or a list of messages, got {type(messages).__name__}")
    return list(messages)


def _b64(data: Any, what: str) -> str:
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidRequestError(f"{what} source must be {{'bytes': ...}} with bytes, got {type(data).__name__}")
    return base64.b64encode(data).decode("ascii")


def _source_bytes(block: Mapping[str, Any], what: str) -> Any:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise InvalidRequestError(f"{what} block needs a 'source' mapping")
    if "location" in source and "bytes" not in source:
        raise InvalidRequestError(
            f"{what} with a location source (e.g. S3) cannot be sent to llama-server; pass the bytes instead"
        )
    return source.get("bytes")


def _document_part(document: Mapping[str, Any]) -> dict[str, Any]:
    fmt = str(document.get("format", "")).lower()
    name = document.get("name", "document")
    if fmt not in TEXT_DOCUMENT_FORMATS:
        raise InvalidRequestError(
            f"document {name!r} has format {fmt!r}, which llama-server cannot read; "
            f"only text formats ({', '.join(sorted(TEXT_DOCUMENT_FORMATS))}) are inlined"
        )
    data = _source_bytes(document, "document")
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidRequestError(f"document {name!r} source must be {{'bytes': ...}}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"document {name!r} ({fmt}) is not UTF-8 text: {exc}") from None
    return {"type": "text", "text": f"[document: {name} ({fmt})]\n{text}"}


def _content_part(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """Translate one user/tool content block into a chat content part (None: nothing to send)."""
    if "text" in block:
        return {"type": "text", "text": block["text"]}
    if "image" in block:
        image = block["image"]
        fmt = str(image.get("format", "png")).lower()
        data = _b64(_source_bytes(image, "image"), "image")
        return {"type": "image_url", "image_url": {"url": f"data:image/{_IMAGE_MIME.get(fmt, fmt)};base64,{data}"}}
    if "audio" in block:
        audio = block["audio"]
        data = _b64(_source_bytes(audio, "audio"), "audio")  # raw base64: the server refuses data URIs here
        return {"type": "input_audio", "input_audio": {"data": data, "format": audio.get("format", "wav")}}
    if "video" in block:
        data = _b64(_source_bytes(block["video"], "video"), "video")
        return {"type": "input_video", "input_video": {"data": data}}
    if "document" in block:
        return _document_part(block["document"])
    if "json" in block:
        return {"type": "text", "text": json.dumps(block["json"], ensure_ascii=False)}
    if "cachePoint" in block:
        return None  # llama-server caches the shared prompt prefix by itself
    raise InvalidRequestError(f"unsupported content block {sorted(block)!r}")


def _content(parts: list[dict[str, Any]]) -> Any:
    """Send a lone text part as a plain string, anything else as a list of parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _tool_call(tool_use: Mapping[str, Any]) -> dict[str, Any]:
    try:
        arguments = json.dumps(tool_use.get("input", {}), ensure_ascii=False)
        return {
            "id": tool_use["toolUseId"],
            "type": "function",
            "function": {"name": tool_use["name"], "arguments": arguments},
        }
    except KeyError as exc:
        raise InvalidRequestError(f"toolUse block lacks {exc.args[0]!r}") from None
    except TypeError as exc:
        raise InvalidRequestError(f"toolUse input is not JSON-serializable: {exc}") from None


def _tool_message(result: Mapping[str, Any]) -> dict[str, Any]:
    if "toolUseId" not in result:
        raise InvalidRequestError("toolResult block lacks 'toolUseId'")
    parts = [part for part in map(_content_part, result.get("content", [])) if part is not None]
    if not parts:
        parts = [{"type": "text", "text": ""}]
    return {"role": "tool", "tool_call_id": result["toolUseId"], "content": _content(parts)}


def _format_message(index: int, message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, Mapping) or "role" not in message:
        raise InvalidRequestError(f"message {index} must be a mapping with 'role' and 'content'")
    role = message["role"]
    blocks = message.get("content")
    if isinstance(blocks, str):
        blocks = [{"text": blocks}]
    if role not in ("user", "assistant") or not isinstance(blocks, (list, tuple)):
        raise InvalidRequestError(f"message {index}: role must be 'user' or 'assistant' and content a list")
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for block in blocks:
        if not isinstance(block, Mapping):
            raise InvalidRequestError(f"message {index}: content blocks must be mappings")
        if "toolUse" in block:
            tool_calls.append(_tool_call(block["toolUse"]))
        elif "toolResult" in block:
            out.append(_tool_message(block["toolResult"]))
        elif "reasoningContent" in block:
            # Sent back as `reasoning_content`; the chat template decides whether to render it.
            text = block["reasoningContent"].get("reasoningText", {}).get("text")
            if text:
                reasoning.append(text)
        else:
            part = _content_part(block)
            if part is not None:
                parts.append(part)
    if role == "assistant":
        if parts or tool_calls or reasoning:
            assistant: dict[str, Any] = {"role": "assistant"}
            if parts:
                assistant["content"] = _content(parts)
            if tool_calls:
                assistant["tool_calls"] = tool_calls
            if reasoning:
                assistant["reasoning_content"] = "".join(reasoning)
            out.append(assistant)
    elif parts:
        out.append({"role": "user", "content": _content(parts)})
    elif not out:
        raise InvalidRequestError(f"message {index} (user) has no content to send")
    return out


def format_messages(
    messages: Sequence[Any],
    system_prompt: str | None = None,
    system_prompt_content: Iterable[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Translate Strands messages and a system prompt into chat-completions messages.

    `system_prompt_content` (Strands system blocks) wins over `system_prompt` when both are
    given; its `cachePoint` blocks are skipped.

    Raises:
        InvalidRequestError: For a message or block that cannot be sent.
    """
    formatted: list[dict[str, Any]] = []
    if system_prompt_content is not None:
        system_text = "".join(block["text"] for block in system_prompt_content if "text" in block)
    else:
        system_text = system_prompt
    if system_text:
        formatted.append({"role": "system", "content": system_text})
    for index, message in enumerate(messages):
        formatted.extend(_format_message(index, message))
    return formatted


def format_tools(tool_specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Translate Strands tool specs (`inputSchema: {"json": schema}`) into OpenAI function tools.

    Raises:
        InvalidRequestError: When a spec has no name.
    """
    tools = []
    for spec in tool_specs:
        if "name" not in spec:
            raise InvalidRequestError(f"tool spec without a name: {spec!r}")
        schema = spec.get("inputSchema", {"json": {"type": "object", "properties": {}}})
        schema = schema.get("json", schema) if isinstance(schema, Mapping) else schema
        function = {"name": spec["name"], "description": spec.get("description", ""), "parameters": schema}
        tools.append({"type": "function", "function": function})
    return tools


def _apply_tool_choice(
    tool_specs: list[Mapping[str, Any]], tool_choice: Mapping[str, Any] | None
) -> tuple[list[Mapping[str, Any]], str | None]:
    """Return the tools to send and the `tool_choice` string llama-server understands."""
    if tool_choice is None:
        return tool_specs, None
    if not isinstance(tool_choice, Mapping) or len(tool_choice) != 1:
        raise InvalidRequestError("tool_choice must be {'auto': {}}, {'any': {}} or {'tool': {'name': ...}}")
    (kind, value), = tool_choice.items()
    if kind in _TOOL_CHOICE_STRINGS:
        return tool_specs, _TOOL_CHOICE_STRINGS[kind]
    if kind == "tool" and isinstance(value, Mapping):
        # llama-server ignores a named-function object, so offer only that tool and require a call.
        chosen = [spec for spec in tool_specs if spec.get("name") == value.get("name")]
        if not chosen:
            raise InvalidRequestError(f"tool_choice names {value.get('name')!r}, which is not among the tool specs")
        return chosen, "required"
    raise InvalidRequestError(f"unknown tool_choice {dict(tool_choice)!r}")


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
        InvalidRequestError: For input the server would reject or silently ignore.
    """
    reserved = _RESERVED_PARAMS.intersection(params)
    if reserved:
        raise InvalidRequestError(f"{sorted(reserved)} cannot be set through params; use the call's arguments")
    if params.get("n", 1) != 1:
        raise InvalidRequestError("n must be 1: a stream of Strands events follows a single choice")
    if "grammar" in params and "json_schema" in params:
        raise InvalidRequestError("grammar and json_schema cannot be used together")
    body: dict[str, Any] = {
        "model": model_id,
        "messages": format_messages(to_messages(messages), system_prompt, system_prompt_content),
    }
    body.update(params)
    if params.get("stop") and "verbose" not in params:
        # Only the final chunk of a verbose stream says whether a stop string ended the answer
        # (`stop_type: "word"`), which becomes the stop reason `stop_sequence`.
        body["verbose"] = True
    if tool_specs:
        if "grammar" in params:
            raise InvalidRequestError("tools cannot be combined with a custom grammar (llama-server refuses it)")
        specs, choice = _apply_tool_choice(list(tool_specs), tool_choice)
        body["tools"] = format_tools(specs)
        if choice is not None:
            body["tool_choice"] = choice
    body["stream"] = True
    body["stream_options"] = {**params.get("stream_options", {}), "include_usage": True}
    return body
