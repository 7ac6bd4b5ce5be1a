"""Pure embeddings and reranking: inputs checked, requests built, answers parsed, batches planned.

No I/O: `RetrievalMixin` sends what is built here and hands the answers back.

Embeddings travel as base64 (little-endian float32, as the server computes them): 5.3 bytes per
number instead of about 20 as JSON text, and decoded without parsing text. The values are the
same. How many inputs go in one request is planned so that each answer stays within half of
`Limits.json_body` (`inputs_per_request`).
"""

from __future__ import annotations

import array
import base64
import binascii
import dataclasses
import sys
from typing import Any, Mapping, Optional, Sequence, Union

from ._errors import InputTooLongError, InvalidRequestError, StreamError, preview
from ._tokens import check_token_ids

__all__ = [
    "ASSUMED_MAX_WIDTH",
    "TOKENS_PER_BYTE",
    "EmbeddingInput",
    "Embeddings",
    "MAX_INPUTS_PER_REQUEST",
    "Ranked",
    "build_embeddings_request",
    "build_rerank_request",
    "check_input_lengths",
    "check_reserved",
    "inputs_per_request",
    "may_exceed",
    "parse_embeddings",
    "parse_rerank",
    "to_inputs",
    "tokens_per_byte",
    "too_long",
    "truncate_tokens",
]

EmbeddingInput = Union[str, list[int]]
"""One input: a text, or the token ids of one."""

MAX_INPUTS_PER_REQUEST = 512
"""The most inputs sent in one request: the server answers only when all are done, and a read
timeout counts the silence before the answer."""

ASSUMED_MAX_WIDTH = 16_384
"""Numbers per vector assumed before the first answer tells the model's real width."""

_ITEM_OVERHEAD = 128  # bytes of JSON around each vector: index, object, encoding_format
_SPECIAL_MARGIN = 16  # tokens a tokenizer adds besides the text's own (BOS/EOS/SEP, a space prefix)
_RESERVED = {
    "embed": frozenset({"input", "content", "encoding_format", "model"}),
    "rerank": frozenset({"query", "documents", "texts", "top_n", "return_text", "model"}),
}


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """The answer of `embed`.

    Attributes:
        vectors: One vector per input, in input order.
        prompt_tokens: Tokens the server embedded, over all inputs.
    """

    vectors: list[list[float]]
    prompt_tokens: int


@dataclasses.dataclass(frozen=True)
class Ranked:
    """One document of a `rerank` answer.

    Attributes:
        index: Its position in the documents passed.
        score: Its relevance to the query, as the model scores it (not limited to 0-1).
        document: The document itself.
    """

    index: int
    score: float
    document: str


def check_reserved(params: Mapping[str, Any], endpoint: str) -> None:
    """Refuse params that set a field the client chooses for `endpoint` (`embed` or `rerank`).

    Raises:
        InvalidRequestError: Naming the fields.
    """
    reserved = _RESERVED[endpoint].intersection(params)
    if reserved:
        raise InvalidRequestError(f"{sorted(reserved)} cannot be set through params of {endpoint}(); "
                                  "use its arguments (the client chooses the rest)")


def to_inputs(value: Any) -> list[EmbeddingInput]:
    """Return the inputs of `embed` as a new list: one text or token-id list per input.

    Args:
        value: A string, a list of token ids (one input), or a list of strings and token-id lists.

    Raises:
        InvalidRequestError: For no input, an empty input, or anything else.
    """
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, (list, tuple)) and value and all(type(item) is int for item in value):
        items = [list(value)]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InvalidRequestError(f"input must be a string, a list of strings or a list of token-id lists, "
                                  f"got {type(value).__name__}")
    if not items:
        raise InvalidRequestError("input is empty: nothing to embed")
    inputs: list[EmbeddingInput] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise InvalidRequestError(f"input {index} is an empty string: the server cannot embed it")
            inputs.append(item)
        elif isinstance(item, (list, tuple)):
            inputs.append(check_token_ids(item, f"input {index}", allow_empty=False))
        else:
            raise InvalidRequestError(f"input {index} must be a string or a list of token ids, "
                                      f"got {type(item).__name__}")
    return inputs


def too_long(index: int, n_tokens: int, limit: int, *, context: bool = False) -> InputTooLongError:
    """Return the error for input `index` having `n_tokens` > `limit` tokens.

    Args:
        index: The input's position.
        n_tokens: Its token count.
        limit: The most tokens the server takes in one input.
        context: The limit is a slot's context (last-token pooling), not the physical batch.
    """
    what = "a slot's context" if context else "the server's physical batch size, -ub"
    fix = "a larger -c" if context else "a larger -ub (and pass batch_limit=)"
    return InputTooLongError(
        f"input {index} has {n_tokens} tokens, more than the {limit} the server embeds at once ({what}); "
        f"pass truncate=True to embed its first {limit} tokens, or start the server with {fix}",
        index=index, n_tokens=n_tokens, limit=limit,
    )


def check_input_lengths(inputs: Sequence[EmbeddingInput], limit: int) -> None:
    """Raise `InputTooLongError` for the first token-id input longer than `limit` (texts are not counted)."""
    for index, item in enumerate(inputs):
        if isinstance(item, list) and len(item) > limit:
            raise too_long(index, len(item), limit)


TOKENS_PER_BYTE: Mapping[int, int] = {1: 1, 2: 1, 5: 1, 3: 2}
"""The most tokens per UTF-8 byte of a text, by llama.cpp vocabulary type (`/v1/models` meta
`vocab_type`): SPM (1), BPE (2) and RWKV (5) consume at least one byte per token; WordPiece (3)
may add a word-start token to a one-byte word. Unigram (4, e.g. T5 and XLM-R) normalizes text
first (NFKC can turn one character into many), so it has no such bound, nor have the others."""


def tokens_per_byte(meta: Optional[Mapping[str, Any]]) -> Optional[int]:
    """The bound of `TOKENS_PER_BYTE` for a model's `/v1/models` meta; None when there is none."""
    vocab_type = meta.get("vocab_type") if meta is not None else None
    return TOKENS_PER_BYTE.get(vocab_type) if type(vocab_type) is int else None


def may_exceed(text: str, limit: int, per_byte: Optional[int]) -> bool:
    """Whether `text` may have more than `limit` tokens; False means it surely has not.

    Args:
        text: The text.
        limit: The most tokens allowed.
        per_byte: The tokenizer's most tokens per UTF-8 byte (`tokens_per_byte`); None when
            unknown, and then every text may exceed.
    """
    return per_byte is None or len(text.encode("utf-8")) * per_byte + _SPECIAL_MARGIN > limit


def truncate_tokens(full: list[int], plain: list[int], limit: int) -> list[int]:
    """Cut a tokenized input to `limit` tokens, keeping the special tokens the tokenizer adds.

    Args:
        full: The text's tokens with special tokens (as the server embeds it).
        plain: The same text's tokens without special tokens.
        limit: The most tokens to keep.

    Returns:
        `full` itself when it fits; else its leading special tokens, the first tokens of the
        text, and its trailing special tokens (e.g. BERT's `[CLS] ... [SEP]`), `limit` in all.
        If the specials cannot be told apart, simply the first `limit` tokens of `full`.
    """
    if len(full) <= limit:
        return full
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            head, tail = full[:start], full[start + len(plain):]
            room = limit - len(head) - len(tail)
            if room > 0:
                return head + plain[:room] + tail
            break
    return full[:limit]


def inputs_per_request(budget: int, width: Optional[int]) -> int:
    """How many inputs one request may carry so that its answer stays within `budget` bytes.

    Args:
        budget: Bytes an answer may have (half of `Limits.json_body`).
        width: Numbers per vector, once known; None assumes `ASSUMED_MAX_WIDTH`.
    """
    per_vector = 4 * ((4 * (width or ASSUMED_MAX_WIDTH) + 2) // 3) + _ITEM_OVERHEAD  # base64 of float32
    return max(1, min(MAX_INPUTS_PER_REQUEST, budget // per_vector))


def build_embeddings_request(inputs: Sequence[EmbeddingInput], *, model_id: str,
                             params: Mapping[str, Any]) -> dict[str, Any]:
    """Build the body of a `/v1/embeddings` request for `inputs` (one vector each).

    Raises:
        InvalidRequestError: When `params` sets a field the client chooses.
    """
    check_reserved(params, "embed")
    return {**params, "model": model_id, "input": list(inputs), "encoding_format": "base64"}


def _vector(value: Any) -> Optional[list[float]]:
    """A vector from base64 float32 (little-endian) or a JSON list of numbers; None if neither."""
    if isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(data) % 4:
            return None
        numbers = array.array("f", data)
        if sys.byteorder == "big":
            numbers.byteswap()
        return numbers.tolist()
    if isinstance(value, list) and all(type(number) in (int, float) for number in value):
        return [float(number) for number in value]
    return None


def parse_embeddings(answer: Any, count: int) -> Embeddings:
    """Parse a `/v1/embeddings` answer for `count` inputs.

    Raises:
        StreamError: Unless the answer has exactly one vector per input index and a token count.
    """
    path = "/v1/embeddings"
    data = answer.get("data") if isinstance(answer, dict) else None
    usage = answer.get("usage") if isinstance(answer, dict) else None
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not isinstance(data, list) or type(prompt_tokens) is not int:
        raise StreamError(f"{path} answered without a data list and usage.prompt_tokens", payload=preview(answer))
    if len(data) != count:
        raise StreamError(f"{path} answered with {len(data)} vectors for {count} inputs", payload=preview(answer))
    by_index: dict[int, list[float]] = {}
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        vector = _vector(item.get("embedding")) if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < count or index in by_index or vector is None:
            raise StreamError(f"{path} answered with a malformed or repeated vector", payload=preview(item))
        by_index[index] = vector
    return Embeddings(vectors=[by_index[index] for index in range(count)], prompt_tokens=prompt_tokens)


def build_rerank_request(query: Any, documents: Any, *, top_n: Optional[int], model_id: str,
                         params: Mapping[str, Any]) -> dict[str, Any]:
    """Build the body of a `/v1/rerank` request.

    Raises:
        InvalidRequestError: For a query that is not a string, documents that are not a
            non-empty list of strings, a `top_n` that is not an int >= 0, or reserved params.
    """
    if not isinstance(query, str):
        raise InvalidRequestError(f"query must be a string, got {type(query).__name__}")
    if isinstance(documents, str) or not isinstance(documents, Sequence) or not documents:
        raise InvalidRequestError("documents must be a non-empty list of strings")
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise InvalidRequestError(f"document {index} must be a string, got {type(document).__name__}")
    if top_n is not None and (type(top_n) is not int or top_n < 0):
        raise InvalidRequestError(f"top_n must be an int >= 0 or None, got {top_n!r}")
    check_reserved(params, "rerank")
    body = {**params, "model": model_id, "query": query, "documents": list(documents)}
    if top_n is not None:
        body["top_n"] = top_n
    return body


def parse_rerank(answer: Any, documents: Sequence[str], top_n: Optional[int]) -> list[Ranked]:
    """Parse a `/v1/rerank` answer: best first (ties in document order), at most `top_n`.

    Raises:
        StreamError: For results that are not `{index, relevance_score}` with a valid, unique index.
    """
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise StreamError("/v1/rerank answered without a results list", payload=preview(answer))
    ranked: list[Ranked] = []
    seen: set[int] = set()
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score: Any = item.get("relevance_score") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < len(documents) or index in seen \
                or type(score) not in (int, float):
            raise StreamError("/v1/rerank answered with a malformed or repeated result", payload=preview(item))
        seen.add(index)
        ranked.append(Ranked(index=index, score=float(score), document=documents[index]))
    ranked.sort(key=lambda entry: (-entry.score, entry.index))
    return ranked if top_n is None else ranked[:top_n]
