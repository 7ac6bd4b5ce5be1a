"""The base of `LlamaCppModel`: one server's transport, the configuration, and how calls are made.

The model's jobs (chat streaming, inference endpoints, server management) are mixins over this
base, each in its module; this module holds what they share and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any, Mapping, Optional


from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_BATCH_LIMIT,
    Limits,
    ModelConfig,
    TimeoutValue,
    check_api_key,
    check_headers,
    check_seconds,
    normalize_params,
    normalize_timeout,
)
from ._errors import BadRequestError, InvalidRequestError, LlamaCppError, StreamError, UnknownModelError, preview
from ._json import encode_body
from ._tokens import parse_token_ids
from ._server_info import find_model, parse_models
from ._transport import DEFAULT_RETRY, Call, Transport, retry_policy, split_credentials

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "BaseClient", "DEFAULT_POOL_MAXSIZE", "DEFAULT_TIMEOUT", "check_deadline"]

logger = logging.getLogger("llamacpp_lite")

API_KEY_ENV = "LLAMACPP_API_KEY"
"""Environment variable read for the API key when none is passed."""

BASE_URL_ENV = "LLAMACPP_BASE_URL"
"""Environment variable read for the server's URL when none is passed."""

DEFAULT_POOL_MAXSIZE = 64
"""Connections kept open per server: one per concurrent stream you expect."""

DEFAULT_TIMEOUT = (10.0, None)
"""10 s to connect, and no bound on the gaps of an answer (a queued request or a model being
swapped in sends nothing for as long as that takes; bound the whole call with `deadline=`)."""

_CONTEXT_RETRY_S = 30.0  # a failed look-up of the server's context size is not repeated sooner


def _base_url(url: Any) -> tuple[str, Optional[tuple[str, str]]]:
    """Return the URL without credentials, a trailing slash or a trailing `/v1`, and the credentials."""
    if not isinstance(url, str):
        raise InvalidRequestError(f"base_url must be a string, got {type(url).__name__}")
    clean, credentials = split_credentials(url.strip())
    if not clean.startswith(("http://", "https://")) or len(clean) <= len("https://"):
        raise InvalidRequestError(f"base_url must be an http(s) URL, got {clean!r}")
    clean = clean.rstrip("/")
    return (clean[: -len("/v1")] if clean.endswith("/v1") else clean), credentials


def check_deadline(deadline: Any) -> Optional[float]:
    """Return `deadline` as seconds, or None.

    Raises:
        InvalidRequestError: For anything but None or a positive finite number.
    """
    return None if deadline is None else check_seconds("deadline", deadline, or_none=True)


def _check_attempts(attempts: Any) -> int:
    if type(attempts) is not int or attempts < 1:
        raise InvalidRequestError(f"structured_output_attempts must be an int >= 1, got {attempts!r}")
    return attempts


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class BaseClient:
    """What every job of `LlamaCppModel` shares: the transport, the settings and the call helpers.

    See `LlamaCppModel` for the arguments.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        timeout: Any = DEFAULT_TIMEOUT,
        *,
        api_key: Optional[str] = None,
        model_id: str = "default",
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        context_window_limit: Optional[int] = None,
        retry: Any = DEFAULT_RETRY,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        verify: bool | str = True,
        limits: Optional[Limits] = None,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        deadline: Optional[float] = None,
        structured_output_attempts: int = 1,
    ) -> None:
        self.base_url, credentials = _base_url(base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)
        self._timeout = normalize_timeout(timeout)
        self._deadline = check_deadline(deadline)
        self._attempts = _check_attempts(structured_output_attempts)
        self._config = ModelConfig().updated(
            model_id=model_id, params=params, context_window_limit=context_window_limit, batch_limit=batch_limit
        )
        if type(pool_maxsize) is not int or pool_maxsize < 1:
            raise InvalidRequestError(f"pool_maxsize must be an int >= 1, got {pool_maxsize!r}")
        if not isinstance(verify, (bool, str)):
            raise InvalidRequestError(f"verify must be True, False or a CA bundle path, got {type(verify).__name__}")
        if limits is not None and not isinstance(limits, Limits):
            raise InvalidRequestError(f"limits must be a Limits, got {type(limits).__name__}")
        self._transport = Transport(
            self.base_url,
            api_key=check_api_key(api_key if api_key is not None else os.environ.get(API_KEY_ENV)),
            basic=credentials,
            headers=check_headers(headers),
            retry=retry_policy(retry),
            pool_maxsize=pool_maxsize,
            verify=verify,
            limits=limits or Limits(),
        )
        self._context_lock = threading.Lock()
        self._server_n_ctx: Optional[int] = None
        self._n_ctx_failed_at: Optional[float] = None
        self._n_ctx_pending = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model_id={self._config.model_id!r})"

    def __enter__(self) -> "BaseClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections. The object can still be used; it reconnects."""
        self._transport.close()

    # -- configuration ------------------------------------------------------------------------

    def update_config(self, **model_config: Any) -> None:
        """Replace settings (`model_id`, `params`, `context_window_limit`, `batch_limit`).

        `params` replaces the previous params as a whole, as in Strands.

        Raises:
            InvalidRequestError: For an unknown key or a bad value.
        """
        self._config = self._config.updated(**model_config)

    def get_config(self) -> dict[str, Any]:
        """Return a copy of the settings; changing it changes nothing here. Never holds the key."""
        return self._config.as_dict()

    @property
    def config(self) -> dict[str, Any]:
        """The settings, as `get_config()` (Strands reads `config["model_id"]`)."""
        return self._config.as_dict()

    @property
    def context_window_limit(self) -> Optional[int]:
        """The configured limit, else the server's per-slot context size, else None.

        The server is asked once. Called from a thread running an event loop, this never blocks:
        it returns None and asks the server in the background. A failed look-up is not repeated
        for 30 seconds.
        """
        if self._config.context_window_limit is not None:
            return self._config.context_window_limit
        with self._context_lock:
            if self._server_n_ctx is not None or self._n_ctx_pending:
                return self._server_n_ctx
            if self._n_ctx_failed_at is not None and time.monotonic() - self._n_ctx_failed_at < _CONTEXT_RETRY_S:
                return None
            self._n_ctx_pending = True
        if _in_event_loop():
            threading.Thread(target=self._look_up_n_ctx, name="llamacpp-lite-props", daemon=True).start()
            return None
        return self._look_up_n_ctx()

    def _look_up_n_ctx(self) -> Optional[int]:
        n_ctx = failed_at = None
        try:
            n_ctx = self._server_context_size()
        except LlamaCppError as exc:
            logger.debug("context size unknown: %s", exc)
            failed_at = time.monotonic()
        with self._context_lock:
            self._server_n_ctx, self._n_ctx_failed_at, self._n_ctx_pending = n_ctx, failed_at, False
        return n_ctx

    def _server_context_size(self) -> Optional[int]:
        """The per-slot context size the server reports.

        A router's own `/props` has no model (`n_ctx` 0): the configured model's are asked for
        (`/props?model=`; the router loads the model if needed).
        """
        props = self._object(self._get("/props"), "/props")
        if props.get("role") == "router":
            props = self._object(self._get("/props", query={"model": self._config.model_id}), "/props")
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") if isinstance(settings, Mapping) else None
        return n_ctx if type(n_ctx) is int and n_ctx > 0 else None

    def _unknown_model(self, model_id: str, available: list[str], cause: Optional[BadRequestError] = None
                       ) -> UnknownModelError:
        """The error for a model id the server does not have, naming what it has."""
        offers = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "") if available else "no model"
        return UnknownModelError(
            f"model {model_id!r} not found; the server offers: {offers}",
            model_id=model_id,
            available=available,
            status_code=cause.status_code if cause is not None else 400,
            error_type=cause.error_type if cause is not None else "invalid_request_error",
            body=cause.body if cause is not None else None,
        )

    def _explain_bad_request(self, error: BadRequestError, model_id: str) -> BadRequestError:
        """Return `UnknownModelError` when a 400 is a router's "model 'x' not found", else `error`.

        Decided by the server's model list, not by the message; the message only saves that
        look-up for 400s that cannot be about the model (they do not name it).
        """
        if isinstance(error, UnknownModelError) or f"'{model_id}'" not in error.message:
            return error
        try:
            models = parse_models(self._get("/models"))
        except LlamaCppError:
            return error
        if find_model(models, model_id) is not None:
            return error
        return self._unknown_model(model_id, [model.id for model in models], error)

    # -- calls ----------------------------------------------------------------------------------

    def _model_meta(self) -> Optional[dict[str, Any]]:
        """The loaded model's `meta` in `/v1/models` (`n_vocab`, `vocab_type`, `n_embd`...), or None
        when the server does not say (no such endpoint, several models none of which is ours...)."""
        try:
            models = self._field(self._get("/v1/models"), "data", list, "/v1/models")
        except LlamaCppError:
            return None
        mine = [entry for entry in models if isinstance(entry, dict)
                and (len(models) == 1 or entry.get("id") == self._config.model_id)]
        meta = mine[0].get("meta") if mine else None
        return meta if isinstance(meta, dict) else None

    def _token_ids(self, text: str, *, add_special: bool = False, call: Optional[Call] = None) -> list[int]:
        """The server's token ids of `text` (special tokens parsed; `add_special` adds BOS/EOS...)."""
        answer = self._post("/tokenize", {"content": text, "add_special": add_special}, call=call)
        return parse_token_ids(self._field(answer, "tokens", list, "/tokenize"), "/tokenize")

    def _params(self, overrides: Mapping[str, Any]) -> Mapping[str, Any]:
        """The configured params with this call's `overrides` on top (both normalized)."""
        if not overrides:
            return self._config.params
        return {**self._config.params, **normalize_params(overrides)}

    def _call(self, deadline: Optional[float] = None, *, retry_status: bool = True) -> Call:
        """A `Call` for one request, bounded by `deadline` (checked), else by the model's `deadline`.

        `retry_status=False` for a probe: a 503 "Loading model" is its answer, not waited out.
        """
        deadline = check_deadline(deadline)
        return Call(deadline=self._deadline if deadline is None else deadline, retry_status=retry_status)

    def _get(self, path: str, *, query: Optional[Mapping[str, str]] = None, timeout: TimeoutValue | None = None,
             call: Optional[Call] = None) -> Any:
        return self._transport.request_json("GET", path, query=query, call=call or self._call(),
                                            timeout=self._timeout if timeout is None else timeout)

    def _post(self, path: str, body: Any, *, query: Optional[Mapping[str, str]] = None,
              call: Optional[Call] = None) -> Any:
        """POST `body`; an object body names the configured model, which a router routes by."""
        if isinstance(body, Mapping) and "model" not in body:
            body = {"model": self._config.model_id, **body}  # a single-model server ignores it
        return self._transport.request_json("POST", path, body=encode_body(body), query=query,
                                            call=call or self._call(), timeout=self._timeout)

    @staticmethod
    def _shape_error(path: str, expected: str, answer: Any) -> StreamError:
        return StreamError(f"{path} answered with something other than {expected}", payload=preview(answer))

    @classmethod
    def _object(cls, answer: Any, path: str) -> dict[str, Any]:
        """Return `answer`, checked to be a JSON object."""
        if not isinstance(answer, dict):
            raise cls._shape_error(path, "an object", answer)
        return answer

    @staticmethod
    def _field(answer: Any, name: str, kind: type, path: str) -> Any:
        """Return `answer[name]`, checked to be a `kind`.

        Raises:
            StreamError: When the answer is not an object with such a field.
        """
        value = answer.get(name) if isinstance(answer, dict) else None
        if not isinstance(value, kind):
            raise StreamError(f"{path} answered without a {kind.__name__} {name!r}", payload=preview(answer))
        return value
