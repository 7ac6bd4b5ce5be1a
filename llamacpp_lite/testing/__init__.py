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
