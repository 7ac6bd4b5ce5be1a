"""Retrieval: embeddings (`/v1/embeddings`) and reranking (`/v1/rerank`) for local RAG.

How `embed` knows the server's per-input limit. llama-server embeds one input in one physical
batch (`-ub`, default 512 tokens; with last-token pooling, a slot's context) and no endpoint
reports that size. Over it, the whole request fails with a 500 ("too large to process", or a
context error) that does not say which input. So the limit is a setting, `batch_limit` (default
512, the server's default), and the common case costs nothing extra: inputs are sent as they
are. Only when the server refuses a request are its inputs counted with the server's tokenizer;
an input over the limit becomes `InputTooLongError` naming it, else the server's own error is
raised. `truncate=True` counts before sending instead, and sends the token ids of any input that
is too long, cut to the limit. Either way a text too short in UTF-8 bytes to be over the limit is
not counted, for the tokenizers where that is sure (`_embeddings.TOKENS_PER_BYTE`, by the
`vocab_type` that `/v1/models` reports; one request per call).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from . import _embeddings
from ._client import BaseClient
from ._config import check_batch_limit, normalize_params
from ._embeddings import EmbeddingInput, Embeddings, Ranked
from ._errors import ContextWindowOverflowException, LlamaCppError, ServerError

__all__ = ["RetrievalMixin"]


class RetrievalMixin(BaseClient):
    """The retrieval job of `LlamaCppModel`: `embed` and `rerank`.

    These endpoints do not generate, so they send only the call's keyword arguments, not the
    configured `params` (which are sampling settings).
    """

    def embed(self, input: Union[str, Sequence[Any]], *, truncate: bool = False,
              batch_limit: Optional[int] = None, **params: Any) -> Embeddings:
        """Return one embedding vector per input (the server must run with `--embeddings`).

        Any number of inputs works: they are sent in several requests when there are many
        (at most 512 each, and few enough that each answer stays within half of
        `Limits.json_body`), and the vectors come back in input order.

        Args:
            input: A string, a list of strings, a list of token ids (one input), or a list of
                strings and token-id lists.
            truncate: Embed the first `batch_limit` tokens of a longer input (exactly: counted
                and cut with the server's tokenizer, special tokens kept) instead of raising.
            batch_limit: The most tokens one input may have; default: the model's `batch_limit`.
            **params: Request fields for this call (e.g. `embd_normalize`).

        Returns:
            `Embeddings`: `vectors` and `prompt_tokens`.

        Raises:
            InvalidRequestError: For no input, an empty input, or anything else that is not one.
            InputTooLongError: For an input longer than `batch_limit`, naming it (see the module).
            NotSupportedError: When the server does not serve embeddings (no `--embeddings`).
            BadRequestError: E.g. for a server whose pooling is `none` (not OAI-compatible).
            LlamaCppError: Its other subclasses per the error table in the README.
        """
        inputs = _embeddings.to_inputs(input)
        limit = self._config.batch_limit if batch_limit is None else check_batch_limit(batch_limit)
        extra = normalize_params(params)
        _embeddings.check_reserved(extra, "embed")
        if truncate:
            per_byte = _embeddings.tokens_per_byte(self._model_meta())
            inputs = [self._truncated(item, limit, per_byte) for item in inputs]
        else:
            _embeddings.check_input_lengths(inputs, limit)
        budget = self._transport.limits.json_body // 2
        vectors: list[list[float]] = []
        prompt_tokens = 0
        width: Optional[int] = None
        while len(vectors) < len(inputs):
            start = len(vectors)
            batch = inputs[start:start + _embeddings.inputs_per_request(budget, width)]
            part = self._embed_batch(batch, start, limit, extra)
            vectors.extend(part.vectors)
            prompt_tokens += part.prompt_tokens
            width = max(len(vector) for vector in part.vectors)
        return Embeddings(vectors=vectors, prompt_tokens=prompt_tokens)

    def _embed_batch(self, batch: list[EmbeddingInput], start: int, limit: int, params: dict[str, Any]) -> Embeddings:
        body = _embeddings.build_embeddings_request(batch, model_id=self._config.model_id, params=params)
        try:
            answer = self._post("/v1/embeddings", body)
        except (ServerError, ContextWindowOverflowException) as exc:
            raise self._explain_refusal(batch, start, limit, exc) from exc
        return _embeddings.parse_embeddings(answer, len(batch))

    def _explain_refusal(self, batch: list[EmbeddingInput], start: int, limit: int,
                         error: LlamaCppError) -> LlamaCppError:
        """`InputTooLongError` for the first input of a refused request over the limit, else `error`."""
        context = False
        if isinstance(error, ContextWindowOverflowException) and type(error.n_ctx) is int:
            context, limit = True, error.n_ctx
        per_byte = _embeddings.tokens_per_byte(self._model_meta())
        try:
            for offset, item in enumerate(batch):
                if isinstance(item, str) and not _embeddings.may_exceed(item, limit, per_byte):
                    continue
                n_tokens = len(item) if isinstance(item, list) else len(self._token_ids(item, add_special=True))
                if n_tokens > limit:
                    return _embeddings.too_long(start + offset, n_tokens, limit, context=context)
        except LlamaCppError:
            pass  # the inputs cannot be counted: the server's own error says what it can
        return error

    def _truncated(self, item: EmbeddingInput, limit: int, per_byte: Optional[int]) -> EmbeddingInput:
        """`item`, or its token ids cut to `limit` when it has more tokens."""
        if isinstance(item, list):
            return item[:limit]
        if not _embeddings.may_exceed(item, limit, per_byte):
            return item
        full = self._token_ids(item, add_special=True)
        if len(full) <= limit:
            return item
        return _embeddings.truncate_tokens(full, self._token_ids(item, add_special=False), limit)

    def rerank(self, query: str, documents: Sequence[str], *, top_n: Optional[int] = None,
               **params: Any) -> list[Ranked]:
        """Rank `documents` by relevance to `query` (the server must run with `--reranking`).

        Args:
            query: The query.
            documents: The texts to rank.
            top_n: Keep only the best `top_n`; None keeps all.
            **params: Request fields for this call.

        Returns:
            `Ranked` entries (`index` into `documents`, `score`, `document`), best first;
            equal scores keep the documents' order.

        Raises:
            InvalidRequestError: For a query that is not a string, no documents, a document
                that is not a string, or a bad `top_n`.
            NotSupportedError: When the server does not rerank (no `--reranking`).
            ContextWindowOverflowException: When the query and a document do not fit a slot.
            LlamaCppError: Its other subclasses per the error table in the README.
        """
        body = _embeddings.build_rerank_request(query, documents, top_n=top_n, model_id=self._config.model_id,
                                                params=normalize_params(params))
        return _embeddings.parse_rerank(self._post("/v1/rerank", body), body["documents"], top_n)
