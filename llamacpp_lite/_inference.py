"""Inference without the chat template: tokens, raw completion (`/completion`) and fill-in-the-middle (`/infill`)."""

from __future__ import annotations

from typing import Any, Generator, Iterator, Literal, Mapping, Optional, Sequence, Union, overload

from . import _completion
from ._chat import EventStream
from ._client import BaseClient
from ._completion import Completion, CompletionChunk
from ._config import normalize_params
from ._errors import InvalidRequestError, LlamaCppError, ServerError
from ._json import encode_body
from ._tokens import Token, check_token_ids, parse_pieces

__all__ = ["InferenceMixin"]


class InferenceMixin(BaseClient):
    """The inference job of `LlamaCppModel` besides chat: `tokenize`, `detokenize`, `complete`,
    `stream_complete`, `infill`, `stream_infill`.

    `complete` and `infill` send the configured `params` and the call's keyword arguments, like
    chat does (see `_completion` for the few names translated for these endpoints).
    """

    @overload
    def tokenize(self, text: str, *, add_special: bool = ..., with_pieces: Literal[False] = ...) -> list[int]: ...

    @overload
    def tokenize(self, text: str, *, add_special: bool = ..., with_pieces: Literal[True]) -> list[Token]: ...

    def tokenize(self, text: str, *, add_special: bool = False,
                 with_pieces: bool = False) -> Union[list[int], list[Token]]:
        """Return the tokens of `text` as the server's tokenizer cuts it (special tokens parsed).

        Args:
            text: The text.
            add_special: Add the special tokens the model puts around an input (e.g. BOS), as
                `embed` and `complete` do with a text prompt.
            with_pieces: Return `Token`s (id, text, bytes) instead of bare ids.

        Raises:
            InvalidRequestError: When `text` is not a string.
        """
        if not isinstance(text, str):
            raise InvalidRequestError(f"text must be a string, got {type(text).__name__}")
        if not with_pieces:
            return self._token_ids(text, add_special=add_special)
        answer = self._post("/tokenize", {"content": text, "add_special": add_special, "with_pieces": True})
        return parse_pieces(self._field(answer, "tokens", list, "/tokenize"), "/tokenize")

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Return the text of token ids (special tokens are rendered as their text).

        Raises:
            InvalidRequestError: For ids that are not ints >= 0, before sending; or, once the
                server refused them, for an id beyond the vocabulary (naming it).
        """
        ids = check_token_ids(tokens, "tokens")
        try:
            return str(self._field(self._post("/detokenize", {"tokens": ids}), "content", str, "/detokenize"))
        except ServerError as exc:  # an unknown id is a 500 with a C++ message: say which one
            raise self._explain_unknown_token(ids, exc) from exc

    def _explain_unknown_token(self, ids: list[int], error: ServerError) -> LlamaCppError:
        """The error naming the first id beyond the vocabulary (`/v1/models` meta), else `error`."""
        n_vocab = (self._model_meta() or {}).get("n_vocab")
        if type(n_vocab) is not int:
            return error
        unknown = next(((index, token) for index, token in enumerate(ids) if token >= n_vocab), None)
        if unknown is None:
            return error
        return InvalidRequestError(f"tokens[{unknown[0]}] = {unknown[1]} is not a token id of this model "
                                   f"(its vocabulary has {n_vocab} tokens)")

    # -- raw completion and fill-in-the-middle -----------------------------------------------

    def _generation_params(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return _completion.generation_params(self._config.params, normalize_params(kwargs))

    def complete(self, prompt: Union[str, Sequence[int]], **params: Any) -> Completion:
        """Continue a raw prompt (no chat template) with llama.cpp's `/completion`.

        Args:
            prompt: The text to continue, or its token ids.
            **params: Request fields for this call (sampling, `grammar`, `json_schema`, `stop`,
                `n_probs`, ...), over the configured params; `max_tokens` means `n_predict`.

        Returns:
            The whole `Completion`.

        Raises:
            InvalidRequestError: For an empty prompt or params that cannot be sent.
            LlamaCppError: Its subclasses per the error table in the README.
        """
        body = _completion.build_completion_request(prompt, model_id=self._config.model_id,
                                                    params=self._generation_params(params), stream=False)
        return _completion.parse_completion(self._post("/completion", body), "/completion")

    def stream_complete(self, prompt: Union[str, Sequence[int]], **params: Any) -> EventStream[CompletionChunk]:
        """Like `complete`, streamed: one `CompletionChunk` per token, the last with `final`.

        The request is checked at once and sent when iteration starts; leaving the loop early
        (or `close()`) closes the connection and llama-server stops generating.
        """
        body = _completion.build_completion_request(prompt, model_id=self._config.model_id,
                                                    params=self._generation_params(params), stream=True)
        return self._stream_chunks("/completion", body)

    def infill(self, prefix: str, suffix: str, *, prompt: Optional[str] = None,
               input_extra: Optional[Sequence[Mapping[str, str]]] = None, **params: Any) -> Completion:
        """Fill in the middle between `prefix` and `suffix` with llama.cpp's `/infill`.

        Needs a model with fill-in-the-middle tokens (code models); the server builds the
        prompt from them.

        Args:
            prefix: The text before the gap.
            suffix: The text after the gap.
            prompt: Text the middle starts with (placed after the prefix).
            input_extra: Other files as context, `[{"filename": "util.py", "text": "..."}]`.
                The server keeps them only within `n_ctx - n_batch - 2 * n_predict` tokens of
                its own settings (start it with a `-b` well below `-c`).
            **params: Request fields, as for `complete`.

        Raises:
            NotSupportedError: When the model has no fill-in-the-middle tokens (the server's message).
            InvalidRequestError, LlamaCppError: As for `complete`.
        """
        body = _completion.build_infill_request(prefix, suffix, prompt=prompt, input_extra=input_extra,
                                                model_id=self._config.model_id,
                                                params=self._generation_params(params), stream=False)
        return _completion.parse_completion(self._post("/infill", body), "/infill")

    def stream_infill(self, prefix: str, suffix: str, *, prompt: Optional[str] = None,
                      input_extra: Optional[Sequence[Mapping[str, str]]] = None,
                      **params: Any) -> EventStream[CompletionChunk]:
        """Like `infill`, streamed as `stream_complete` streams."""
        body = _completion.build_infill_request(prefix, suffix, prompt=prompt, input_extra=input_extra,
                                                model_id=self._config.model_id,
                                                params=self._generation_params(params), stream=True)
        return self._stream_chunks("/infill", body)

    def _stream_chunks(self, path: str, body: Mapping[str, Any]) -> EventStream[CompletionChunk]:
        call = self._call()
        payloads = self._transport.stream(path, encode_body(body), timeout=self._timeout, call=call,
                                          last=_completion.is_final)
        return EventStream(self._chunks(payloads, path), call)

    @staticmethod
    def _chunks(payloads: Iterator[Any], path: str) -> Generator[CompletionChunk, None, None]:
        try:
            yield from _completion.translate_stream(payloads, path)
        finally:
            payloads.close()  # type: ignore[attr-defined]
