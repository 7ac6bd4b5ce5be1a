"""Inference endpoints besides chat: tokenization (more to come: embeddings, rerank, completion)."""

from __future__ import annotations

from ._client import BaseClient
from ._errors import InvalidRequestError

__all__ = ["InferenceMixin"]


class InferenceMixin(BaseClient):
    """The inference job of `LlamaCppModel` besides chat."""

    def tokenize(self, text: str) -> list[int]:
        """Return the token ids of `text` (special tokens parsed), as the server counts them.

        Raises:
            InvalidRequestError: When `text` is not a string.
        """
        if not isinstance(text, str):
            raise InvalidRequestError(f"text must be a string, got {type(text).__name__}")
        return list(self._field(self._post("/tokenize", {"content": text}), "tokens", list, "/tokenize"))
