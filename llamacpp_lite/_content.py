"""Pure translation of Strands content blocks into chat-completions content parts.

A block may carry several parts at once, e.g. `{"image": {...}, "text": "Describe this"}`:
every part is sent, its `text` last, so the model reads the media and then the question.
Media are checked against what llama-server can decode (see `IMAGE_FORMATS`, `AUDIO_FORMATS`):
it sniffs the bytes and decodes images with stb_image and audio with miniaudio.
"""

from __future__ import annotations

import base64
import json
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ._errors import InvalidRequestError
from ._json import encode_body

__all__ = ["AUDIO_FORMATS", "IMAGE_FORMATS", "STRUCTURAL_KEYS", "TEXT_DOCUMENT_FORMATS", "as_content",
           "block_parts", "dumps"]

IMAGE_FORMATS: Mapping[str, str] = MappingProxyType({
    "png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "bmp": "bmp", "tga": "x-tga",
    "psd": "vnd.adobe.photoshop", "hdr": "vnd.radiance", "pnm": "x-portable-anymap",
    "ppm": "x-portable-pixmap", "pgm": "x-portable-graymap",
})
"""Image formats llama-server decodes (its stb_image), with the MIME subtype sent for each."""

AUDIO_FORMATS: Mapping[str, str] = MappingProxyType({
    "wav": "wav", "wave": "wav", "x-wav": "wav", "mp3": "mp3", "mpeg": "mp3", "flac": "flac", "x-flac": "flac",
})
"""Audio formats llama-server decodes (miniaudio's wav, mp3 and flac), with the name sent for each."""

TEXT_DOCUMENT_FORMATS = frozenset({"txt", "md", "csv", "html", "json"})
"""Document formats inlined as text; any other format (pdf, docx, ...) is refused."""

STRUCTURAL_KEYS = frozenset({"toolUse", "toolResult", "reasoningContent"})
"""Block keys that are not content parts: the message translator places them itself."""

_DECODABLE = {  # for error messages
    "image": "it decodes png, jpeg (jpg), gif, bmp, tga, psd, hdr, pnm (ppm, pgm); convert it to png or jpeg",
    "audio": "it decodes wav, mp3, flac; convert it to one of these",
}
_WEBP = " (only a server built with video support and an ffmpeg on its PATH reads webp)"


def dumps(value: Any, what: str) -> str:
    """Return `value` as JSON text, for JSON sent inside a string (tool arguments, json blocks).

    Strict JSON only: NaN and infinities are refused here, since inside a string they would
    pass the body's own check and reach llama-server, which answers 500.

    Args:
        value: The value to encode.
        what: Names the value in error messages (e.g. `message 1 (assistant): toolUse 'add' input`).

    Returns:
        The JSON text.

    Raises:
        InvalidRequestError: When `value` holds something JSON cannot carry, naming where.
    """
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        encode_body(value)  # names the offending value and where it sits
    except InvalidRequestError as exc:
        detail = str(exc).removeprefix("the request cannot be sent as JSON: ").replace("the body holds", "it holds")
        raise InvalidRequestError(f"{what} cannot be sent as JSON: {detail}") from None
    raise InvalidRequestError(f"{what} cannot be sent as JSON")  # pragma: no cover - encode_body refuses it too


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _source_bytes(media: Mapping[str, Any], what: str) -> bytes:
    source = media.get("source")
    if isinstance(source, Mapping) and "location" in source and "bytes" not in source:
        raise InvalidRequestError(
            f"{what} with a location source (e.g. S3) cannot be sent to llama-server; pass the bytes instead"
        )
    if not isinstance(source, Mapping) or "bytes" not in source:
        raise InvalidRequestError(f"{what} needs a source {{'bytes': ...}}")
    data = source["bytes"]
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidRequestError(f"{what} source bytes must be bytes, got {type(data).__name__}")
    return data if isinstance(data, bytes) else bytes(data)


def _media(value: Any, kind: str, where: str, default: str, formats: Mapping[str, str]) -> tuple[str, str]:
    """Return the wire name of a media block's format and its base64 data."""
    media = _mapping(value, f"{where}: {kind}")
    given = _string(media.get("format", default), f"{where}: {kind} format")
    name = given.strip().lower().rpartition("/")[2]  # "png", "PNG" and "image/png" alike
    if name not in formats:
        raise InvalidRequestError(f"{where}: {kind} format {given!r} is not decodable by llama-server; "
                                  f"{_DECODABLE[kind]}{_WEBP if name == 'webp' else ''}")
    data = _source_bytes(media, f"{where}: {kind}")
    if not data:
        raise InvalidRequestError(f"{where}: {kind} source bytes are empty")
    return formats[name], base64.b64encode(data).decode("ascii")


def _image(value: Any, where: str) -> dict[str, Any]:
    mime, data = _media(value, "image", where, "png", IMAGE_FORMATS)
    return {"type": "image_url", "image_url": {"url": f"data:image/{mime};base64,{data}"}}


def _audio(value: Any, where: str) -> dict[str, Any]:
    fmt, data = _media(value, "audio", where, "wav", AUDIO_FORMATS)
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}  # raw base64, no data URI


def _video(value: Any, where: str) -> dict[str, Any]:
    video = _mapping(value, f"{where}: video")
    _string(video.get("format", ""), f"{where}: video format")  # any: the server's ffmpeg sniffs it
    data = _source_bytes(video, f"{where}: video")
    return {"type": "input_video", "input_video": {"data": base64.b64encode(data).decode("ascii")}}


def _document(value: Any, where: str) -> dict[str, Any]:
    document = _mapping(value, f"{where}: document")
    fmt = _string(document.get("format", ""), f"{where}: document format").lower()
    name = _string(document.get("name", "document"), f"{where}: document name")
    if fmt not in TEXT_DOCUMENT_FORMATS:
        raise InvalidRequestError(
            f"{where}: document {name!r} has format {fmt!r}, which llama-server cannot read; "
            f"only text formats ({', '.join(sorted(TEXT_DOCUMENT_FORMATS))}) are inlined"
        )
    data = _source_bytes(document, f"{where}: document {name!r}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"{where}: document {name!r} ({fmt}) is not UTF-8 text: {exc}") from None
    return {"type": "text", "text": f"[document: {name} ({fmt})]\n{text}"}


def _text(value: Any, where: str) -> dict[str, Any]:
    return {"type": "text", "text": _string(value, f"{where}: text")}


def _json(value: Any, where: str) -> dict[str, Any]:
    return {"type": "text", "text": dumps(value, f"{where}: json block")}


def _guard(value: Any, where: str) -> list[dict[str, Any]]:
    """Bedrock guardrail content: plain content to any other server."""
    guard = _mapping(value, f"{where}: guardContent")
    parts = [_image(guard["image"], where)] if "image" in guard else []
    if "text" in guard:
        parts.append(_text(_mapping(guard["text"], f"{where}: guardContent text").get("text"), where))
    return parts


def _citations(value: Any, where: str) -> list[dict[str, Any]]:
    """Cited text from an earlier answer: its generated text (the citations have no wire field)."""
    content = _mapping(value, f"{where}: citationsContent").get("content", [])
    if not isinstance(content, (list, tuple)):
        raise InvalidRequestError(f"{where}: citationsContent content must be a list, got {type(content).__name__}")
    return [_text(_mapping(item, f"{where}: citationsContent item").get("text"), where) for item in content]


_PART: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "image": _image, "audio": _audio, "video": _video, "document": _document, "json": _json,
}
_PARTS: dict[str, Callable[[Any, str], list[dict[str, Any]]]] = {
    "guardContent": _guard, "citationsContent": _citations,
}
_KNOWN_KEYS = frozenset({"text", "cachePoint", *_PART, *_PARTS, *STRUCTURAL_KEYS})


def block_parts(block: Any, where: str, skip: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Translate every part of one content block, its `text` last; `cachePoint` sends nothing.

    Args:
        block: A Strands content block.
        where: Names the block's place in error messages.
        skip: Structural keys the caller handles itself; any other structural key is refused.

    Returns:
        The content parts, in order.

    Raises:
        InvalidRequestError: For a block that is not a mapping, a key this library does not
            know, a misplaced structural key, or a part that cannot be sent.
    """
    parts: list[dict[str, Any]] = []
    for key, value in _mapping(block, f"{where}: content block").items():
        if key in _PART:
            parts.append(_PART[key](value, where))
        elif key in _PARTS:
            parts.extend(_PARTS[key](value, where))
        elif key in skip or key in ("text", "cachePoint"):
            continue  # text is added last; llama-server caches the shared prompt prefix by itself
        elif key in STRUCTURAL_KEYS:
            raise InvalidRequestError(f"{where}: a {key!r} block cannot appear here")
        else:
            raise InvalidRequestError(
                f"{where}: unknown content block key {key!r} (known: {', '.join(sorted(_KNOWN_KEYS))})"
            )
    if "text" in block:
        parts.append(_text(block["text"], where))
    return parts


def as_content(parts: list[dict[str, Any]]) -> Any:
    """Send a lone text part as a plain string, anything else as a list of parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts
