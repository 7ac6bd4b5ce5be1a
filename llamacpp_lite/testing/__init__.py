"""Deterministic test data for llama-server: tiny models, projectors, adapters, media.

Everything here is written in well under a second with ``gguf`` and ``numpy``
(the ``testing`` extra), from seeded random numbers: the same call gives the
same bytes.

* :func:`write_tiny_model`: a tiny chat model (variants ``chat``,
  ``reasoning``, ``bad_tool_call``; ``fim=True`` adds fill-in-the-middle).
* :func:`write_tiny_mmproj`: a vision + audio projector for ``--mmproj``.
* :func:`write_tiny_lora`: a LoRA adapter for ``--lora``.
* :func:`tiny_png`, :func:`tiny_wav`: media to send to the projector.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamacpp_lite.testing.media import tiny_png, tiny_wav
    from llamacpp_lite.testing.tiny_lora import write_tiny_lora
    from llamacpp_lite.testing.tiny_mmproj import (
        AUDIO_CHUNK_SECONDS,
        TOKENS_PER_AUDIO_CHUNK,
        TOKENS_PER_IMAGE,
        write_tiny_mmproj,
    )
    from llamacpp_lite.testing.tiny_model import FIM_TOKENS, VARIANTS, write_tiny_model

__all__ = [
    "AUDIO_CHUNK_SECONDS",
    "FIM_TOKENS",
    "TOKENS_PER_AUDIO_CHUNK",
    "TOKENS_PER_IMAGE",
    "VARIANTS",
    "tiny_png",
    "tiny_wav",
    "write_tiny_lora",
    "write_tiny_mmproj",
    "write_tiny_model",
]

_HOMES = {
    "tiny_png": "media", "tiny_wav": "media", "write_tiny_lora": "tiny_lora",
    "AUDIO_CHUNK_SECONDS": "tiny_mmproj", "TOKENS_PER_AUDIO_CHUNK": "tiny_mmproj", "TOKENS_PER_IMAGE": "tiny_mmproj",
    "write_tiny_mmproj": "tiny_mmproj", "FIM_TOKENS": "tiny_model", "VARIANTS": "tiny_model",
    "write_tiny_model": "tiny_model",
}


def __getattr__(name: str) -> Any:
    """Import on first use, so the media helpers (standard library only) work without gguf and numpy."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
