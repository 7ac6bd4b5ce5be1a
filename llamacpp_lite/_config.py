"""Configuration values: timeouts, the URL, and the sampling parameters sent to llama-server.

Everything here is pure and immutable: a call never changes the configuration it reads.
"""

from __future__ import annotations

import dataclasses
import http.client
import warnings
from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple, Union

from urllib3.exceptions import InvalidHeader, ProtocolError
from urllib3.util.retry import Retry

from ._errors import InvalidRequestError, LlamaCppWarning

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RETRY",
    "ModelConfig",
    "RetryPolicy",
    "TimeoutValue",
    "UnsupportedParameterWarning",
    "normalize_params",
    "normalize_timeout",
]

DEFAULT_BASE_URL = "http://localhost:8080"

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

_warned: set = set()

_NOTHING_RECEIVED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class RetryPolicy(Retry):
    """urllib3's `Retry`, counting "closed before any response byte" as a connect error.

    llama-server closes the connection after every streamed answer although it advertises
    keep-alive, so a pooled connection can be dead by the time the next request is sent on it.
    Such a request got no byte of answer (`RemoteDisconnected`, a reset, a broken pipe).
    urllib3 cannot tell whether the server read it first, but llama-server cancels the work of
    a client that disconnects, so sending it again is as safe as after a refused connection.
    Read timeouts and failures after the first byte of an answer stay read errors (never
    retried by `DEFAULT_RETRY`, whose `read` is 0). `Retry-After` is honoured up to
    `backoff_max` seconds, and a garbled one is ignored.
    """

    def parse_retry_after(self, retry_after: str) -> float:
        """Honour `Retry-After` up to `backoff_max` seconds; ignore a garbled one."""
        try:
            seconds = super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0  # neither seconds nor a date: back off as if there were no header
        return min(seconds, self.backoff_max)

    def _is_connection_error(self, err: Exception) -> bool:
        if isinstance(err, ProtocolError) and any(isinstance(arg, _NOTHING_RECEIVED) for arg in err.args):
            return True
        return super()._is_connection_error(err)


DEFAULT_RETRY = RetryPolicy(
    total=None,
    connect=3,  # the request never reached the server (or got no answer byte): safe to send again
    read=0,  # the server may have started work: never repeated
    status=4,
    other=0,
    redirect=None,
    allowed_methods=None,  # POST too: a connect failure or a 503 means nothing was processed
    status_forcelist=(503,),  # "Loading model"
    backoff_factor=0.25,
    backoff_max=8.0,
    backoff_jitter=0.25,
    respect_retry_after_header=True,
    raise_on_status=False,  # after the last try, the 503 itself is mapped (with the server's message)
)
"""Retry connect failures and 503 (model loading), with backoff 0.25 s x 2^n (cap 8 s) and jitter."""


class UnsupportedParameterWarning(LlamaCppWarning):
    """A parameter was given that llama.cpp does not have; it is not sent."""


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
        if timeout <= 0:
            raise InvalidRequestError(f"timeout must be positive or None, got {timeout!r}")
        return float(timeout)
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = (normalize_timeout(part) for part in timeout)
        return (connect, read)  # type: ignore[return-value]
    raise InvalidRequestError(f"timeout must be None, seconds, or a (connect, read) tuple; got {timeout!r}")


def normalize_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the request fields for `params`, under the names llama-server reads.

    Renamed parameters are translated (`mirostat_lr` -> `mirostat_eta`, ...), parameters
    llama.cpp does not have are dropped with one `UnsupportedParameterWarning` per name, an
    `extra_body` mapping (an OpenAI-SDK habit) is flattened into the top level, and `None`
    values are dropped. Everything else passes through unchanged at the top level.

    Raises:
        InvalidRequestError: When `params` is not a mapping of string keys.
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
    return flat


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The settings of a model object; replaced as a whole, never changed in place.

    Attributes:
        model_id: The `model` field sent; a single-model llama-server ignores it.
        params: Request fields sent with every request (already normalized).
        context_window_limit: Tokens the caller wants to use at most, or None to ask the server.
    """

    model_id: str = "default"
    params: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    context_window_limit: Optional[int] = None

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
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a new plain dict (no secrets live here)."""
        return {
            "model_id": self.model_id,
            "params": dict(self.params),
            "context_window_limit": self.context_window_limit,
        }
