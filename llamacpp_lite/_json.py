"""JSON in and out, with the library's errors: bodies are checked before sending, answers bounded.

`encode_body` refuses what JSON cannot carry (NaN, infinities, sets, bytes, objects) and names
where it sits in the request; `decode_json` turns every decoding failure, too-deep nesting
included, into `StreamError`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional

from ._errors import InvalidRequestError, StreamError

__all__ = ["decode_json", "encode_body"]

_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""`json.loads`'s own scanner (the same settings as its default decoder): (value, end) from an index."""


def encode_body(body: Any) -> bytes:
    """Return the UTF-8 JSON of a request body.

    Raises:
        InvalidRequestError: For a value JSON cannot carry, naming where it is
            (e.g. `messages[1].tool_calls[0].function.arguments.x: NaN`).
    """
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        where, what = _offender(body, "")
        raise InvalidRequestError(
            f"the request cannot be sent as JSON: {where or 'the body'} holds {what}" if what else
            f"the request cannot be sent as JSON: {type(exc).__name__}"
        ) from None


def _offender(value: Any, path: str, depth: int = 0) -> tuple[str, Optional[str]]:
    """Return the path and description of the first value JSON cannot carry."""
    if depth > 200:
        return path, "values nested more than 200 levels deep"
    if isinstance(value, float) and not math.isfinite(value):
        return path, repr(value).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return path, f"a key of type {type(key).__name__}"
            found = _offender(item, f"{path}.{key}" if path else str(key), depth + 1)
            if found[1]:
                return found
        return path, None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _offender(item, f"{path}[{index}]", depth + 1)
            if found[1]:
                return found
        return path, None
    if value is None or isinstance(value, (str, int, float, bool)):
        return path, None
    return path, f"a value of type {type(value).__name__}, which JSON cannot carry"


def decode_json(text: str | bytes, what: str, *, status_code: Optional[int] = None, start: int = 0) -> Any:
    """Decode JSON, turning every failure (including too deep nesting) into `StreamError`.

    Gives exactly what `json.loads(text[start:])` gives; a `str` whose JSON value begins right
    at `start` and runs to its end (an SSE line after `data: `) is scanned in place, without
    the copy and the whitespace checks of `json.loads`.

    Args:
        text: The JSON text.
        what: What it is, for the error message (e.g. "a stream event").
        status_code: The HTTP status, kept on errors.
        start: Where the JSON begins in `text`.

    Raises:
        StreamError: When `text` is not JSON, or nests deeper than Python's recursion limit.
    """
    if type(text) is str:
        try:
            value, end = _scan(text, start)
            if end == len(text):
                return value
        except Exception:  # noqa: S110  # not plain JSON from here to the end: json.loads decides below
            pass
    if start:
        text = text[start:]
    try:
        return json.loads(text)
    except ValueError:
        raise StreamError(f"{what} is not JSON", payload=_text(text), status_code=status_code) from None
    except RecursionError:
        raise StreamError(f"{what} nests too deeply to decode", payload=_text(text), status_code=status_code) from None


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data[:4096].decode("utf-8", "replace")
