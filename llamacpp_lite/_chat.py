"""Chat: streaming Strands events from `/v1/chat/completions`, and what is built on that stream."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Generator, Iterator, Mapping, Optional, Sequence, TypeVar

from . import _wire
from ._client import BaseClient
from ._errors import (
    Aborted,
    BadRequestError,
    DeadlineExceeded,
    InvalidRequestError,
    LlamaCppError,
    ModalityNotSupportedError,
    NotSupportedError,
    ServerError,
    StructuredOutputError,
    ToolCallParseError,
    TransportError,
)
from ._events import StreamedOutput, StreamEvent, translate_chunks
from ._json import encode_body
from ._result import ChatResult, collect_result
from ._structured import OutputSpec, check_attempts, output_spec, parse_output, reask_message
from ._transport import Call

__all__ = ["AGENT_KWARGS", "ChatMixin", "EventStream"]

logger = logging.getLogger("llamacpp_lite")

AGENT_KWARGS = frozenset(
    {"invocation_state", "model_state", "agent_metadata", "dynamic_trailing_blocks", "structured_output_model"}
)
"""Keyword arguments a Strands Agent passes to `stream()` that are not request fields: dropped."""

T = TypeVar("T")

_CHAT_PATH = "/v1/chat/completions"
_MEDIA_PART_MODALITY = {"image_url": "vision", "input_audio": "audio", "input_video": "video"}
_PARSED_OUTPUT = ("tools", "response_format", "json_schema")  # request fields that make the server parse the output


class EventStream(Iterator[T]):
    """The iterator a streaming call returns (Strands events from `stream()`, chunks from
    `stream_complete()`...), plus `close()`, `abort()` and `with`.

    `with model.stream(...) as events:` closes the connection when the block ends, however it
    ends (llama-server then cancels the generation).
    """

    __slots__ = ("_events", "_call")

    def __init__(self, events: Generator[T, None, None], call: Call) -> None:
        self._events = events
        self._call = call

    def __iter__(self) -> Iterator[T]:
        return self._events  # `for` loops run the generator itself: no extra call per event

    def __next__(self) -> T:
        return next(self._events)

    def __enter__(self) -> "EventStream[T]":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop here: close the connection (llama-server cancels the generation)."""
        self._events.close()

    def abort(self) -> None:
        """Like `close()`, callable from any thread: a blocked read (or a request still queued on
        a busy server) ends at once with `Aborted`, and the request is never sent again."""
        self._call.abort()


def _check_cancel_signal(cancel_signal: Any) -> None:
    if cancel_signal is not None and not callable(getattr(cancel_signal, "is_set", None)):
        raise InvalidRequestError(
            f"cancel_signal must be a threading.Event (something with is_set()), got {type(cancel_signal).__name__}"
        )


class ChatMixin(BaseClient):
    """The chat job of `LlamaCppModel`: `stream`, `chat`, `stream_text`, `structured_output`, `count_tokens`."""

    def stream(
        self,
        messages: Any,
        tool_specs: Optional[Sequence[Mapping[str, Any]]] = None,
        system_prompt: Optional[str] = None,
        *,
        tool_choice: Optional[Mapping[str, Any]] = None,
        system_prompt_content: Optional[Sequence[Mapping[str, Any]]] = None,
        cancel_signal: Any = None,
        deadline: Optional[float] = None,
        **kwargs: Any,
    ) -> EventStream[StreamEvent]:
        """Stream an answer as Strands `StreamEvent` dicts.

        The request is checked and built at once; it is sent when iteration starts. Leaving
        the loop early (or `close()` on the iterator) closes the connection, and llama-server
        then cancels the generation. With `return_progress=True`, `promptProgress` events
        (`processed`, `total`, `cached` tokens, `timeMs`) come before the answer while the
        server processes the prompt.

        Args:
            messages: Strands messages, or a string standing for one user message.
            tool_specs: Strands tool specs to offer.
            system_prompt: A system prompt.
            tool_choice: `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name": ...}}`.
            system_prompt_content: Strands system content blocks (win over `system_prompt`).
            cancel_signal: A `threading.Event`; once set, the stream stops at the next event and
                closes the connection (Strands Agents pass one).
            deadline: Seconds the stream may take in all, from sending the request to its last
                event, including retries and a wait in the server's queue; None for the
                model's `deadline`. Not sent to the server.
            **kwargs: Request fields for this call only, over the configured params. The other
                arguments a Strands Agent passes (`AGENT_KWARGS`) are ignored.

        Returns:
            An iterator of events: messageStart, [promptProgress...], content blocks,
            messageStop, metadata.

        Raises:
            InvalidRequestError: At once, for input that cannot be sent.
            DeadlineExceeded: While iterating, once the deadline passed (the connection is closed).
            ToolCallParseError: While iterating, when the server could not parse the model's
                tool call; it carries what was streamed before.
            LlamaCppError: While iterating: its subclasses per the error table in the README.
        """
        _check_cancel_signal(cancel_signal)
        call = self._call(deadline)
        body = self._chat_body(messages, tool_specs, system_prompt, tool_choice, system_prompt_content, kwargs)
        return self._open(body, cancel_signal, call)

    def _chat_body(self, messages: Any, tool_specs: Optional[Sequence[Mapping[str, Any]]],
                   system_prompt: Optional[str], tool_choice: Optional[Mapping[str, Any]],
                   system_prompt_content: Optional[Sequence[Mapping[str, Any]]],
                   overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The checked request body of a chat stream (`overrides`: this call's request fields)."""
        params = self._params({k: v for k, v in overrides.items() if k not in AGENT_KWARGS})
        return _wire.build_chat_request(
            messages,
            model_id=self._config.model_id,
            params=params,
            tool_specs=tool_specs,
            system_prompt=system_prompt,
            system_prompt_content=system_prompt_content,
            tool_choice=tool_choice,
        )

    def _open(self, body: Mapping[str, Any], cancel_signal: Any, call: Call) -> EventStream[StreamEvent]:
        """The stream of events answering `body` (sent when iterated), cancelled through `call`."""
        payloads = self._transport.stream(_CHAT_PATH, encode_body(body), timeout=self._timeout, call=call)
        return EventStream(self._translate(payloads, body, cancel_signal), call)

    def _translate(self, payloads: Iterator[Any], body: Mapping[str, Any],
                   cancel_signal: Any) -> Generator[StreamEvent, None, None]:
        keep = StreamedOutput() if any(key in body for key in _PARSED_OUTPUT) else None
        try:
            events = translate_chunks(payloads, started=time.perf_counter(), keep=keep)
            if cancel_signal is None:
                yield from events
            else:
                for event in events:
                    if cancel_signal.is_set():
                        return
                    yield event
        except ToolCallParseError as exc:
            if keep is not None:
                exc.add_streamed("".join(keep.text), keep.tool_calls())
            raise
        except ServerError as exc:
            raise self._explain_missing_modality(body, exc) from exc
        except BadRequestError as exc:
            explained = self._explain_bad_request(exc, body["model"])
            if explained is exc:
                raise
            raise explained from exc
        finally:
            payloads.close()  # type: ignore[attr-defined]

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
            modalities = self.props().modalities  # type: ignore[attr-defined]
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

    def chat(
        self,
        messages: Any,
        tool_specs: Optional[Sequence[Mapping[str, Any]]] = None,
        system_prompt: Optional[str] = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Return the whole answer at once (built on `stream`; same arguments and errors)."""
        with self.stream(messages, tool_specs, system_prompt, **kwargs) as events:
            return collect_result(events)

    def stream_text(self, messages: Any, system_prompt: Optional[str] = None, **kwargs: Any) -> Iterator[str]:
        """Yield just the text pieces of the answer as they arrive (built on `stream`)."""
        with self.stream(messages, None, system_prompt, **kwargs) as events:
            for event in events:
                delta = event.get("contentBlockDelta")
                if delta is not None and "text" in delta["delta"]:
                    yield delta["delta"]["text"]

    def structured_output(
        self,
        output_model: Any,
        prompt: Any,
        system_prompt: Optional[str] = None,
        *,
        max_attempts: Optional[int] = None,
        deadline: Optional[float] = None,
        **kwargs: Any,
    ) -> EventStream[StreamEvent]:
        """Stream an answer constrained to a JSON Schema, then yield `{"output": obj}`.

        When an answer does not validate (the server's grammar cannot enforce everything: a
        `format`, a cross-field rule of the model's own validation), it is sent back with the
        errors and the model is asked again, up to `max_attempts` answers in all. An answer cut
        off by `max_tokens` is not argued with: the error says so at once.

        Args:
            output_model: A dataclass, a pydantic model class, or a JSON Schema dict.
            prompt: Strands messages, or a string.
            system_prompt: A system prompt.
            max_attempts: How many answers to ask for at most (>= 1); None for the model's
                `structured_output_attempts` (default 1: no second request).
            deadline: Seconds for the whole call, every attempt included; None for the model's
                `deadline`. Not sent to the server.
            **kwargs: Request fields for this call only.

        Yields:
            The events of each answer (a further attempt starts with another `messageStart`),
            then `{"output": obj}` with an instance of `output_model` (or the validated dict for
            a schema).

        Raises:
            InvalidRequestError: At once, for an output model without a JSON Schema or a bad
                `max_attempts`.
            StructuredOutputError: When the last answer is not valid; `attempts` holds the text
                of every answer. Also a `ValueError`; `StructuredOutputJSONError` (a
                `json.JSONDecodeError`) when it is not JSON; for a pydantic model also a
                `pydantic.ValidationError` (see README).
        """
        spec = output_spec(output_model)
        attempts = check_attempts(self._attempts if max_attempts is None else max_attempts)
        call = self._call(deadline)  # one for every attempt: abort() and the deadline cover them all
        messages = [{"role": "user", "content": [{"text": prompt}]}] if isinstance(prompt, str) else prompt
        request = {**kwargs, "json_schema": spec.schema}
        body = self._chat_body(messages, None, system_prompt, None, None, request)  # checked now
        return EventStream(self._structured(body, spec, attempts, call, messages, system_prompt, request), call)

    def _structured(self, body: Mapping[str, Any], spec: OutputSpec, max_attempts: int, call: Call, messages: Any,
                    system_prompt: Optional[str], request: Mapping[str, Any]) -> Generator[StreamEvent, None, None]:
        texts: list[str] = []  # every answer's text
        call.start()  # the deadline counts from the first request and runs on between the attempts
        try:
            while True:
                text: list[str] = []
                stop_reason, output_tokens = "end_turn", None
                with self._open(body, None, call) as events:
                    for event in events:
                        delta = event.get("contentBlockDelta")
                        if delta is not None and "text" in delta["delta"]:
                            text.append(delta["delta"]["text"])
                        elif "messageStop" in event:
                            stop_reason = event["messageStop"]["stopReason"]
                        elif "metadata" in event:
                            output_tokens = event["metadata"].get("usage", {}).get("outputTokens")
                        yield event
                texts.append("".join(text))
                try:
                    output = parse_output(spec, texts[-1], stop_reason, attempts=texts, output_tokens=output_tokens)
                except StructuredOutputError as exc:
                    if len(texts) >= max_attempts or stop_reason == "max_tokens":
                        raise
                    messages = [*messages, {"role": "assistant", "content": [{"text": texts[-1]}]},
                                {"role": "user", "content": [{"text": reask_message(exc)}]}]
                    body = self._chat_body(messages, None, system_prompt, None, None, request)
                    continue
                yield {"output": output}
                return
        finally:
            call.finish()

    def count_tokens(
        self,
        messages: Any,
        tool_specs: Optional[Sequence[Mapping[str, Any]]] = None,
        system_prompt: Optional[str] = None,
        system_prompt_content: Optional[Sequence[Mapping[str, Any]]] = None,
        *,
        estimate: bool = True,
        deadline: Optional[float] = None,
    ) -> int:
        """Count the prompt tokens of a request exactly: `/apply-template`, then `/tokenize`.

        Args:
            messages: Strands messages, or a string.
            tool_specs: Tool specs (their definitions count too).
            system_prompt: A system prompt.
            system_prompt_content: Strands system content blocks.
            estimate: When the server has no such endpoints or cannot be reached, return an
                estimate (characters / 4, logged as a warning) instead of raising.
            deadline: Seconds for both requests together; None for the model's `deadline`.

        Raises:
            NotSupportedError, TransportError: With `estimate=False`, when the server cannot count.
            DeadlineExceeded: When the deadline passed (never estimated).
        """
        body = _wire.build_chat_request(
            messages,
            model_id=self._config.model_id,
            params={},
            tool_specs=tool_specs,
            system_prompt=system_prompt,
            system_prompt_content=system_prompt_content,
        )
        call = self._call(deadline)
        call.start()  # one deadline for both requests
        try:
            prompt = self._field(self._post("/apply-template", body, call=call), "prompt", str, "/apply-template")
            return len(self._token_ids(prompt, call=call))
        except (NotSupportedError, TransportError) as exc:
            if not estimate or isinstance(exc, (Aborted, DeadlineExceeded)):
                raise
            guess = len(json.dumps(body["messages"]) + json.dumps(body.get("tools", []))) // 4
            logger.warning("token count estimated (%d) because the server could not count: %s", guess, exc)
            return guess
        finally:
            call.finish()
