"""Pure token shapes: token ids checked before sending, `/tokenize` pieces and per-token probabilities.

No I/O. The parsers are strict on what they promise (ids, text, log-probabilities) and raise
`StreamError` for an answer of another shape; fields they do not know are ignored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

from ._errors import InvalidRequestError, StreamError, preview

__all__ = [
    "Token",
    "TokenProbability",
    "check_token_ids",
    "parse_pieces",
    "parse_probabilities",
    "parse_token_ids",
]


@dataclasses.dataclass(frozen=True)
class Token:
    """One token of a text, as the server's tokenizer cut it (`tokenize(..., with_pieces=True)`).

    Attributes:
        id: The token id.
        text: Its text; a piece that is not valid UTF-8 on its own (part of a character split
            over several tokens) is decoded with U+FFFD in place of the broken bytes.
        data: Its exact bytes (the pieces of a text joined give the text's bytes).
    """

    id: int
    text: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class TokenProbability:
    """A generated token with its log-probability and the most likely alternatives.

    Attributes:
        id: The token id.
        token: Its text as the server sent it (an incomplete UTF-8 tail is cut off; use `data`).
        logprob: Its natural log-probability. With `post_sampling_probs` the server sends
            probabilities instead; they are converted (a probability of 0 becomes `-inf`).
        data: Its exact bytes.
        top: The most likely tokens at this position, best first (each without `top`).
    """

    id: int
    token: str
    logprob: float
    data: bytes
    top: tuple["TokenProbability", ...] = ()

    @property
    def prob(self) -> float:
        """The probability, `exp(logprob)` (between 0 and 1)."""
        return math.exp(self.logprob)


def check_token_ids(tokens: Any, what: str, *, allow_empty: bool = True) -> list[int]:
    """Return `tokens` as a new list of token ids, checked to be ints >= 0.

    Args:
        tokens: A list or tuple of ints.
        what: Names the value in the error message.
        allow_empty: Whether an empty list is acceptable.

    Raises:
        InvalidRequestError: For another type, a bool, a negative id, or an empty list when
            `allow_empty` is false.
    """
    if not isinstance(tokens, (list, tuple)):
        raise InvalidRequestError(f"{what} must be a list of token ids, got {type(tokens).__name__}")
    for position, token in enumerate(tokens):
        if type(token) is not int or token < 0:
            raise InvalidRequestError(f"{what}: element {position} must be a token id (an int >= 0), got {token!r:.40}")
    if not tokens and not allow_empty:
        raise InvalidRequestError(f"{what} is empty")
    return list(tokens)


def _shape_error(path: str, expected: str, found: Any) -> StreamError:
    return StreamError(f"{path} answered with {expected} of the wrong shape", payload=preview(found))


def parse_token_ids(tokens: Any, path: str) -> list[int]:
    """Return the token ids of a `/tokenize` answer's `tokens` list.

    Raises:
        StreamError: When an element is not an int.
    """
    if not isinstance(tokens, list) or any(type(token) is not int for token in tokens):
        raise _shape_error(path, "token ids", tokens)
    return tokens


def _piece_bytes(piece: Any) -> Optional[bytes]:
    """The bytes of a piece: a string, or a list of byte values (a piece that is not UTF-8)."""
    if isinstance(piece, str):
        return piece.encode("utf-8")
    if isinstance(piece, list) and all(type(byte) is int and 0 <= byte <= 255 for byte in piece):
        return bytes(piece)
    return None


def parse_pieces(tokens: Any, path: str) -> list[Token]:
    """Return the `Token`s of a `/tokenize` answer made `with_pieces`.

    Raises:
        StreamError: For an element without an int `id` and a string or byte-list `piece`.
    """
    if not isinstance(tokens, list):
        raise _shape_error(path, "pieces", tokens)
    result = []
    for entry in tokens:
        data = _piece_bytes(entry.get("piece")) if isinstance(entry, dict) else None
        if data is None or type(entry.get("id")) is not int:
            raise _shape_error(path, "a piece", entry)
        result.append(Token(id=entry["id"], text=data.decode("utf-8", "replace"), data=data))
    return result


def _number(value: Any) -> Optional[float]:
    return float(value) if type(value) in (int, float) else None


def _probability(entry: Any, where: str, *, nested: bool) -> TokenProbability:
    if not isinstance(entry, dict) or type(entry.get("id")) is not int or not isinstance(entry.get("token"), str):
        raise _shape_error(where, "a token probability", entry)
    logprob = _number(entry.get("logprob"))
    if logprob is None:
        prob = _number(entry.get("prob"))  # post_sampling_probs
        if prob is None or not 0.0 <= prob <= 1.0:
            raise _shape_error(where, "a token probability", entry)
        logprob = math.log(prob) if prob > 0 else -math.inf
    raw = entry.get("bytes")
    data = entry["token"].encode("utf-8") if raw is None else _piece_bytes(raw) if isinstance(raw, list) else None
    if data is None:
        raise _shape_error(where, "token bytes", entry)
    top: tuple[TokenProbability, ...] = ()
    if not nested:
        alternatives = entry.get("top_logprobs", entry.get("top_probs", []))
        if not isinstance(alternatives, list):
            raise _shape_error(where, "alternatives", entry)
        top = tuple(_probability(alternative, where, nested=True) for alternative in alternatives)
    return TokenProbability(id=entry["id"], token=entry["token"], logprob=logprob, data=data, top=top)


def parse_probabilities(entries: Any, where: str) -> tuple[TokenProbability, ...]:
    """Return typed probabilities from llama.cpp's entries (`completion_probabilities`,
    chat `logprobs.content`): `{id, token, bytes, logprob, top_logprobs}` or, with
    `post_sampling_probs`, `{..., prob, top_probs}`.

    Raises:
        StreamError: For entries of another shape.
    """
    if not isinstance(entries, Sequence) or isinstance(entries, (str, bytes)):
        raise _shape_error(where, "probabilities", entries)
    return tuple(_probability(entry, where, nested=False) for entry in entries)
