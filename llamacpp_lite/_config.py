"""Configuration values: timeouts, the URL, and the sampling parameters sent to llama-server.

Everything here is pure and immutable: a call never changes the configuration it reads.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple, Union

from ._errors import InvalidRequestError, LlamaCppWarning
from ._json import encode_body
from ._server_info import lora_request

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_BATCH_LIMIT",
    "Limits",
    "ModelConfig",
    "TimeoutValue",
    "UnsupportedParameterWarning",
    "check_api_key",
    "check_seconds",
    "check_batch_limit",
    "check_headers",
    "normalize_params",
    "normalize_timeout",
]

DEFAULT_BASE_URL = "http://localhost:8080"

DEFAULT_BATCH_LIMIT = 512
"""llama-server's default physical batch size (`-ub`): the most tokens one embedded input may have."""

TimeoutValue = Union[None, float, Tuple[Optional[float], Optional[float]]]
"""None (no timeout), seconds for both phases, or `(connect, read)` seconds (either may be None)."""

RENAMED_PARAMS: Mapping[str, str] = MappingProxyType(
    {
        "mirostat_lr": "mirostat_eta",
        "mirostat_ent": "mirostat_tau",
        "slot_id": "id_slot",
        "penalty_last_n": "repeat_last_n",
    }
)
"""Names the Strands provider documents, mapped to the names llama-server reads."""

REMOVED_PARAMS: Mapping[str, str] = MappingProxyType(
    {
        "tfs_z": "tail-free sampling was removed from llama.cpp (2024)",
        "top_a": "top-a sampling never existed in llama.cpp",
    }
)
"""Names that no llama-server reads: warned about once and not sent."""

_warned: set[str] = set()


class UnsupportedParameterWarning(LlamaCppWarning):
    """A parameter was given that llama.cpp does not have; it is not sent."""


def check_seconds(name: str, value: Any, *, or_none: bool = False) -> float:
    """Return `value` as seconds, checked to be a positive finite number.

    Raises:
        InvalidRequestError: Naming `name`, for anything else (NaN, infinity, a bool, a string...).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidRequestError(
            f"{name} must be a positive finite number of seconds{' or None' if or_none else ''}, got {value!r}")
    return float(value)


def normalize_timeout(timeout: Any) -> TimeoutValue:
    """Check a timeout and return it in the form `requests` takes.

    Args:
        timeout: None (no timeout at all), a number of seconds, or a `(connect, read)` pair.

    Returns:
        The same value, as a float or a tuple of two optional floats.

    Raises:
        InvalidRequestError: For negative numbers or any other shape.
    """
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if not (0 < timeout < math.inf):  # also false for NaN
            raise InvalidRequestError(f"timeout must be a positive finite number or None, got {timeout!r}")
        return float(timeout)
    if isinstance(timeout, (tuple, list)) and len(timeout) == 2:
        connect, read = (normalize_timeout(part) for part in timeout)
        return (connect, read)  # type: ignore[return-value]
    raise InvalidRequestError(f"timeout must be None, seconds, or a (connect, read) tuple; got {type(timeout).__name__}")


def normalize_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the request fields for `params`, under the names llama-server reads.

    Renamed parameters are translated (`mirostat_lr` -> `mirostat_eta`, ...), parameters
    llama.cpp does not have are dropped with one `UnsupportedParameterWarning` per name, an
    `extra_body` mapping (an OpenAI-SDK habit) is flattened into the top level, `None`
    values are dropped, and `lora` may be `{adapter_id: scale}` (sent as the server's list).
    Everything else passes through unchanged at the top level.

    Raises:
        InvalidRequestError: When `params` is not a mapping of string keys, or `lora` is malformed.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidRequestError(f"params must be a mapping, got {type(params).__name__}")
    flat: dict[str, Any] = {}
    extra_body = params.get("extra_body")
    if extra_body is not None:
        if not isinstance(extra_body, Mapping):
            raise InvalidRequestError("params['extra_body'] must be a mapping")
        flat.update(normalize_params(extra_body))
    for name, value in params.items():
        if not isinstance(name, str):
            raise InvalidRequestError(f"parameter names must be strings, got {name!r}")
        if name == "extra_body" or value is None:
            continue
        if name in REMOVED_PARAMS:
            if name not in _warned:
                _warned.add(name)
                warnings.warn(
                    f"parameter {name!r} is not sent: {REMOVED_PARAMS[name]}",
                    UnsupportedParameterWarning,
                    stacklevel=4,
                )
            continue
        flat[RENAMED_PARAMS.get(name, name)] = value
    if "stream_options" in flat and not isinstance(flat["stream_options"], Mapping):
        raise InvalidRequestError("params['stream_options'] must be a mapping")
    if "lora" in flat:
        flat["lora"] = lora_request(flat["lora"])
    encode_body(flat)  # fails now, naming the field, for values JSON cannot carry (NaN, sets, bytes...)
    return flat


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The settings of a model object; replaced as a whole, never changed in place.

    Attributes:
        model_id: The `model` field sent; a single-model llama-server ignores it.
        params: Request fields sent with every request (already normalized).
        context_window_limit: Tokens the caller wants to use at most, or None to ask the server.
        batch_limit: The most tokens one input of `embed` may have: the server's physical batch
            size (`-ub`; for last-token pooling, a slot's context). No endpoint reports it.
    """

    model_id: str = "default"
    params: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    context_window_limit: Optional[int] = None
    batch_limit: int = DEFAULT_BATCH_LIMIT

    def updated(self, **changes: Any) -> "ModelConfig":
        """Return a copy with `changes` applied (params are normalized and replace the old ones).

        Raises:
            InvalidRequestError: For an unknown setting or a bad value.
        """
        unknown = set(changes) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise InvalidRequestError(f"unknown config keys: {sorted(unknown)}")
        if "params" in changes:
            changes["params"] = MappingProxyType(normalize_params(changes["params"]))
        if "model_id" in changes and not isinstance(changes["model_id"], str):
            raise InvalidRequestError(f"model_id must be a string, got {changes['model_id']!r}")
        limit = changes.get("context_window_limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
            raise InvalidRequestError(f"context_window_limit must be a positive int or None, got {limit!r}")
        if "batch_limit" in changes:
            check_batch_limit(changes["batch_limit"])
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a new plain dict (no secrets live here)."""
        return {
            "model_id": self.model_id,
            "params": dict(self.params),
            "context_window_limit": self.context_window_limit,
            "batch_limit": self.batch_limit,
        }


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much of an answer is read at most; past a limit the call fails with `StreamError`.

    Attributes:
        error_body: Bytes read of an error answer or of a body that should have been a stream
            (the rest is not read; the message quotes the start).
        json_body: Bytes a JSON answer may have (after decompression).
        event: Bytes one event of a stream may have.
        compressed_stream: Bytes a compressed stream may decompress to in total.
    """

    error_body: int = 64 * 1024
    json_body: int = 16 * 1024 * 1024
    event: int = 16 * 1024 * 1024
    compressed_stream: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value <= 0:
                raise InvalidRequestError(f"Limits.{field.name} must be a positive int, got {value!r}")


def check_batch_limit(limit: Any) -> int:
    """Return `limit`, checked to be a positive int (a `batch_limit`).

    Raises:
        InvalidRequestError: For anything else.
    """
    if type(limit) is not int or limit <= 0:
        raise InvalidRequestError(f"batch_limit must be a positive int (the server's -ub), got {limit!r}")
    return limit


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def check_api_key(given: Any) -> Optional[str]:
    """Return the API key without surrounding whitespace, or None for no key.

    Raises:
        InvalidRequestError: When it cannot be an HTTP header value; the key is never shown.
    """
    if given is None:
        return None
    if not isinstance(given, str):
        raise InvalidRequestError(f"api_key must be a string, got {type(given).__name__}")
    key = given.strip()
    if not key:
        return None
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequestError("api_key has characters an HTTP header cannot carry (only Latin-1); "
                                  "the key is not shown") from None
    if any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise InvalidRequestError("api_key contains control characters (e.g. a line break); the key is not shown")
    return key


def check_headers(headers: Any) -> dict[str, str]:
    """Return extra headers as a new dict, checked to be sendable.

    Raises:
        InvalidRequestError: For a non-mapping, a name that is not an HTTP token, or a value that
            is not a Latin-1 string without line breaks (values are never shown: they may be secrets).
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidRequestError(f"headers must be a mapping of strings, got {type(headers).__name__}")
    checked = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise InvalidRequestError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise InvalidRequestError(f"header {name!r} must have a string value, got {type(value).__name__}")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequestError(f"header {name!r} has characters an HTTP header cannot carry (only Latin-1)") from None
        if any(ord(char) < 32 and char != "\t" or ord(char) == 127 for char in value):
            raise InvalidRequestError(f"header {name!r} contains control characters (e.g. a line break)")
        checked[name] = value.strip()
    return checked
