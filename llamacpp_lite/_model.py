"""`LlamaCppModel`: the synchronous client, which owns the HTTP session and the configuration."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Iterator, Mapping, Sequence

import requests
import requests.adapters
from urllib3.util.retry import Retry

from . import _sse, _wire
from ._config import DEFAULT_BASE_URL, DEFAULT_RETRY, ModelConfig, normalize_params, normalize_timeout
from ._errors import (
    InvalidRequestError,
    LlamaCppError,
    ModalityNotSupportedError,
    ModelThrottledException,
    NotSupportedError,
    ReadTimeout,
    ServerError,
    StreamError,
    TransportError,
)
from ._events import translate_chunks
from ._result import ChatResult, ServerProps, collect_result
from ._structured import output_spec, parse_output

__all__ = ["AGENT_KWARGS", "API_KEY_ENV", "BASE_URL_ENV", "DEFAULT_RETRY", "EventStream", "LlamaCppModel"]

logger = logging.getLogger("llamacpp_lite")

API_KEY_ENV = "LLAMACPP_API_KEY"
"""Environment variable read for the API key when none is passed."""

BASE_URL_ENV = "LLAMACPP_BASE_URL"
"""Environment variable read for the server's URL when none is passed."""

DEFAULT_POOL_MAXSIZE = 64
"""Connections kept open per server: one per concurrent stream you expect."""

AGENT_KWARGS = frozenset(
    {"invocation_state", "model_state", "agent_metadata", "dynamic_trailing_blocks", "structured_output_model"}
)
"""Keyword arguments a Strands Agent passes to `stream()` that are not request fields: dropped."""
_DEFAULT_CONTEXT_WINDOW = 200_000  # Strands' DEFAULT_CONTEXT_WINDOW_LIMIT
_MEDIA_PART_MODALITY = {"image_url": "vision", "input_audio": "audio", "input_video": "video"}


def _base_url(url: str) -> str:
    """Strip a trailing slash and a trailing `/v1` given out of habit."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidRequestError(f"base_url must be an http(s) URL, got {url!r}")
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class EventStream(Iterator[dict]):
    """The iterator `LlamaCppModel.stream()` returns: Strands events, plus `close()` and `abort()`."""

    __slots__ = ("_events", "_transport")

    def __init__(self, events: Iterator[dict], transport: _sse.ChunkStream) -> None:
        self._events = events
        self._transport = transport

    def __iter__(self) -> Iterator[dict]:
        return self._events  # `for` loops run the generator itself: no extra call per event

    def __next__(self) -> dict:
        return next(self._events)

    def close(self) -> None:
        """Stop here: close the connection (llama-server cancels the generation)."""
        self._events.close()

    def abort(self) -> None:
        """Like `close()`, but callable from another thread while a read is blocked."""
        self._transport.abort()


class LlamaCppModel:
    """A synchronous client for one llama-server, shaped like the Strands `LlamaCppModel`.

    Thread-safe: one object may be shared by many threads; each call builds its own request
    from the configuration it finds and never changes it.

    Example:
        >>> model = LlamaCppModel("http://127.0.0.1:8080", params={"max_tokens": 64})
        >>> model.get_config()["params"]
        {'max_tokens': 64}
        >>> model.close()

    Args:
        base_url: The server's URL, with any path prefix of a proxy or `--api-prefix`; default
            `$LLAMACPP_BASE_URL`, else `http://localhost:8080`.
        timeout: None for no timeout, seconds, or `(connect, read)` seconds. The read
            timeout is the longest gap allowed between two bytes, not a deadline for the
            whole answer; a busy server queues a request without sending a byte.
        api_key: Sent as `Authorization: Bearer`; defaults to `$LLAMACPP_API_KEY`.
        model_id: The `model` field sent (a single-model llama-server ignores it).
        params: Request fields sent at the top level of every request (see README).
        headers: Extra HTTP headers for every request.
        context_window_limit: Tokens the Agent may use; default: the server's context size.
        retry: A urllib3 `Retry`, an int (connect/503 attempts), or None for no retries.
        pool_maxsize: Connections kept open to the server (one per concurrent stream).
        verify: TLS verification: True, False, or the path of a CA bundle.
    """

    def __init__(
        self,
        base_url: str | None = None,
        timeout: Any = None,
        *,
        api_key: str | None = None,
        model_id: str = "default",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        context_window_limit: int | None = None,
        retry: Retry | int | None = DEFAULT_RETRY,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        verify: bool | str = True,
    ) -> None:
        self.base_url = _base_url(base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)
        self._timeout = normalize_timeout(timeout)
        self._config = ModelConfig().updated(
            model_id=model_id, params=params, context_window_limit=context_window_limit
        )
        self._session = requests.Session()
        self._session.verify = verify
        self._session.trust_env = True
        if retry is None:
            retry = DEFAULT_RETRY.new(connect=0, status=0)
        elif isinstance(retry, int) and not isinstance(retry, bool):
            retry = DEFAULT_RETRY.new(connect=retry, status=retry)
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(headers or {})
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._chat_url = self.base_url + "/v1/chat/completions"
        self._server_n_ctx: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model_id={self._config.model_id!r})"

    def __enter__(self) -> "LlamaCppModel":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections. The object can still be used; it reconnects."""
        self._session.close()

    # -- configuration ------------------------------------------------------------------------

    def update_config(self, **model_config: Any) -> None:
        """Replace settings (`model_id`, `params`, `context_window_limit`).

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
    def context_window_limit(self) -> int | None:
        """The configured limit, else the server's per-slot context size (asked once), else None."""
        if self._config.context_window_limit is not None:
            return self._config.context_window_limit
        if self._server_n_ctx is None:
            try:
                self._server_n_ctx = self.props().n_ctx
            except LlamaCppError as exc:
                logger.debug("context size unknown: %s", exc)
        return self._server_n_ctx

    def estimate_utilization(self, input_tokens: int) -> float:
        """Return the fraction of the context window that `input_tokens` would use (Strands API).

        Uses `context_window_limit`, or Strands' default of 200,000 when it is unknown.
        """
        return input_tokens / (self.context_window_limit or _DEFAULT_CONTEXT_WINDOW)

    # -- streaming ---------------------------------------------------------------------------

    def stream(
        self,
        messages: Any,
        tool_specs: Sequence[Mapping[str, Any]] | None = None,
        system_prompt: str | None = None,
        *,
        tool_choice: Mapping[str, Any] | None = None,
        system_prompt_content: Sequence[Mapping[str, Any]] | None = None,
        cancel_signal: threading.Event | None = None,
        **kwargs: Any,
    ) -> EventStream:
        """Stream an answer as Strands `StreamEvent` dicts.

        The request is checked and built at once; it is sent when iteration starts. Leaving
        the loop early (or `close()` on the iterator) closes the connection, and llama-server
        then cancels the generation.

        Args:
            messages: Strands messages, or a string standing for one user message.
            tool_specs: Strands tool specs to offer.
            system_prompt: A system prompt.
            tool_choice: `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name": ...}}`.
            system_prompt_content: Strands system content blocks (win over `system_prompt`).
            cancel_signal: A `threading.Event`; once set, the stream stops at the next event and
                closes the connection (Strands Agents pass one).
            **kwargs: Request fields for this call only, over the configured params. The other
                arguments a Strands Agent passes (`AGENT_KWARGS`) are ignored.

        Returns:
            An iterator of events: messageStart, content blocks, messageStop, metadata.

        Raises:
            InvalidRequestError: At once, for input that cannot be sent.
            LlamaCppError: While iterating: its subclasses per the error table in the README.
        """
        params = self._config.params
        if kwargs:
            params = {**params, **normalize_params({k: v for k, v in kwargs.items() if k not in AGENT_KWARGS})}
        body = _wire.build_chat_request(
            messages,
            model_id=self._config.model_id,
            params=params,
            tool_specs=tool_specs,
            system_prompt=system_prompt,
            system_prompt_content=system_prompt_content,
            tool_choice=tool_choice,
        )
        transport = _sse.ChunkStream(self._session, self._chat_url, body, timeout=self._timeout)
        return EventStream(self._translate(transport, body, cancel_signal), transport)

    def _translate(
        self, transport: _sse.ChunkStream, body: Mapping[str, Any], cancel_signal: threading.Event | None
    ) -> Iterator[dict]:
        chunks = iter(transport)
        try:
            events = translate_chunks(chunks, started=time.perf_counter())
            if cancel_signal is None:
                yield from events
            else:
                for event in events:
                    if cancel_signal.is_set():
                        return
                    yield event
        except ServerError as exc:
            raise self._explain_missing_modality(body, exc) from exc
        finally:
            chunks.close()

    def _explain_missing_modality(self, body: Mapping[str, Any], error: ServerError) -> ServerError:
        """Return a clearer error when the request had media the loaded model cannot take."""
        sent = {
            _MEDIA_PART_MODALITY[part["type"]]
            for message in body["messages"]
            if isinstance(message.get("content"), list)
            for part in message["content"]
            if part.get("type") in _MEDIA_PART_MODALITY
        }
        if not sent:
            return error
        try:
            modalities = self.props().modalities
        except LlamaCppError:
            return error
        missing = sorted(kind for kind in sent if modalities.get(kind) is False)
        if not missing:
            return error
        return ModalityNotSupportedError(
            f"the loaded model has no {missing[0]} input (start llama-server with a matching --mmproj); "
            f"server said: {error.message}",
            modality=missing[0],
            status_code=error.status_code,
            error_type=error.error_type,
            body=error.body,
        )

    def chat(self, messages: Any, tool_specs: Sequence[Mapping[str, Any]] | None = None,
             system_prompt: str | None = None, **kwargs: Any) -> ChatResult:
        """Return the whole answer at once (built on `stream`; same arguments and errors)."""
        return collect_result(self.stream(messages, tool_specs, system_prompt, **kwargs))

    def stream_text(self, messages: Any, system_prompt: str | None = None, **kwargs: Any) -> Iterator[str]:
        """Yield just the text pieces of the answer as they arrive (built on `stream`)."""
        for event in self.stream(messages, None, system_prompt, **kwargs):
            delta = event.get("contentBlockDelta")
            if delta is not None and "text" in delta["delta"]:
                yield delta["delta"]["text"]

    def structured_output(
        self, output_model: Any, prompt: Any, system_prompt: str | None = None, **kwargs: Any
    ) -> EventStream:
        """Stream an answer constrained to a JSON Schema, then yield `{"output": obj}`.

        Args:
            output_model: A dataclass, a pydantic model class, or a JSON Schema dict.
            prompt: Strands messages, or a string.
            system_prompt: A system prompt.
            **kwargs: Request fields for this call only.

        Yields:
            The stream's events, then `{"output": obj}` with an instance of `output_model`
            (or the validated dict for a schema).

        Raises:
            InvalidRequestError: At once, for an output model without a JSON Schema.
            StructuredOutputError: When the answer is not valid JSON for the schema.
        """
        spec = output_spec(output_model)
        events = self.stream(prompt, None, system_prompt, **{**kwargs, "json_schema": spec.schema})
        return EventStream(self._structured(events, spec), events._transport)

    @staticmethod
    def _structured(events: Iterator[dict], spec: Any) -> Iterator[dict]:
        text: list[str] = []
        stop_reason = "end_turn"
        for event in events:
            delta = event.get("contentBlockDelta")
            if delta is not None and "text" in delta["delta"]:
                text.append(delta["delta"]["text"])
            elif "messageStop" in event:
                stop_reason = event["messageStop"]["stopReason"]
            yield event
        yield {"output": parse_output(spec, "".join(text), stop_reason)}

    # -- server introspection --------------------------------------------------------------

    def _get(self, path: str) -> Any:
        return _sse.request_json(self._session, "GET", self.base_url + path, timeout=self._timeout)

    def _post(self, path: str, body: Mapping[str, Any], field: str) -> Any:
        """POST `body` to `path` and return the answer's `field`."""
        answer = _sse.request_json(self._session, "POST", self.base_url + path, timeout=self._timeout, json_body=body)
        if not isinstance(answer, dict) or field not in answer:
            raise StreamError(f"{path} answered without {field!r}", payload=json.dumps(answer))
        return answer[field]

    def health(self) -> dict[str, Any]:
        """Return `/health` (`{"status": "ok"}` when ready).

        Raises:
            ModelThrottledException: While the model is still loading (503).
            TransportError: When the server cannot be reached.
        """
        return self._get("/health")

    def props(self) -> ServerProps:
        """Return the server's properties (context size, modalities, slots, build), typed."""
        return ServerProps.from_json(self._get("/props"))

    def slots(self) -> list:
        """Return `/slots`: each slot's state and the effective params of its last task."""
        return self._get("/slots")

    def wait_until_ready(self, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Poll `/health` until the server answers 200.

        Raises:
            TimeoutException: (`ReadTimeout`) when the server is not ready within `timeout` s;
                the message carries the last error seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                return
            except (ModelThrottledException, TransportError) as exc:
                if time.monotonic() >= deadline:
                    raise ReadTimeout(f"the server was not ready within {timeout} s: {exc}") from exc
            time.sleep(interval)

    def tokenize(self, text: str) -> list:
        """Return the token ids of `text` (special tokens parsed), as the server counts them."""
        return self._post("/tokenize", {"content": text}, "tokens")

    def count_tokens(
        self,
        messages: Any,
        tool_specs: Sequence[Mapping[str, Any]] | None = None,
        system_prompt: str | None = None,
        system_prompt_content: Sequence[Mapping[str, Any]] | None = None,
        *,
        estimate: bool = True,
    ) -> int:
        """Count the prompt tokens of a request exactly: `/apply-template`, then `/tokenize`.

        Args:
            messages: Strands messages, or a string.
            tool_specs: Tool specs (their definitions count too).
            system_prompt: A system prompt.
            system_prompt_content: Strands system content blocks.
            estimate: When the server has no such endpoints or cannot be reached, return an
                estimate (characters / 4, logged as a warning) instead of raising.

        Raises:
            NotSupportedError, TransportError: With `estimate=False`, when the server cannot count.
        """
        body = _wire.build_chat_request(
            messages,
            model_id=self._config.model_id,
            params={},
            tool_specs=tool_specs,
            system_prompt=system_prompt,
            system_prompt_content=system_prompt_content,
        )
        try:
            prompt = self._post("/apply-template", body, "prompt")
            return len(self.tokenize(prompt))
        except (NotSupportedError, TransportError) as exc:
            if not estimate:
                raise
            guess = len(json.dumps(body["messages"]) + json.dumps(body.get("tools", []))) // 4
            logger.warning("token count estimated (%d) because the server could not count: %s", guess, exc)
            return guess
