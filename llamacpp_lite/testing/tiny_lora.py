"""Deterministic generator of a tiny LoRA adapter for the tiny model.

llama-server loads it with ``-m tiny.gguf --lora tiny-lora.gguf`` and lists it
at ``GET /lora-adapters`` as id 0. The adapter changes which text the model
writes and nothing else: at temperature 0, ``"lora": [{"id": 0, "scale": 0.0}]``
and ``"scale": 1.0`` give different greedy text, and both end the turn as the
plain model does (the structure rules of :mod:`llamacpp_lite.testing.tiny_model`
are untouched).

How: it adapts only ``output.weight`` (the unembedding; llama.cpp applies LoRA
there too). ``lora_a`` (rank, n_embd) reads only the model's random "content"
dims, and ``lora_b`` (n_vocab, rank) writes only to the rows of plain text
tokens (printable ASCII, none of the JSON punctuation the wiring uses), so the
adapter adds a random bigram term of about :data:`LOGIT_STD` logits (times
``scale * alpha / rank``) to the text tokens. That is well below the ~10-logit
margins of the end-of-turn and tool-call rules, so keep the per-request scale
within about [0, 2].

Usage::

    python -m llamacpp_lite.testing lora /tmp/tiny-lora.gguf [--rank 4] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import pathlib

import gguf
import numpy as np

from llamacpp_lite.testing import tiny_model

__all__ = ["write_tiny_lora"]

#: Standard deviation of the logit change on a text token at effective scale 1.
LOGIT_STD = 1.5
# Tokens whose logits the adapter must not touch: the JSON punctuation the
# wiring ranks by hand to close strings, objects and tool calls.
_PROTECTED = frozenset(b'"}<,')


def _text_rows(vocab: tiny_model.Vocab) -> np.ndarray:
    """Returns a mask of the plain text tokens (the ones the model writes as text)."""
    mask = np.zeros(len(vocab.tokens), dtype=bool)
    for token_id in range(len(vocab.tokens)):
        raw = tiny_model._token_bytes(vocab, token_id)
        if (raw is not None and tiny_model._is_printable(raw)
                and len(raw) <= tiny_model.MAX_TEXT_TOKEN_BYTES
                and not (len(raw) == 1 and raw[0] in _PROTECTED)):
            mask[token_id] = True
    return mask


def lora_matrices(rank: int, seed: int, n_vocab: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Builds the adapter's two matrices for ``output.weight``.

    Args:
        rank: The LoRA rank.
        seed: Seed of the random numbers.
        n_vocab: Rows of ``lora_b``; defaults to the tiny model's vocabulary
            (pass the larger size for a model written with ``fim=True``: the
            extra rows stay zero).

    Returns:
        ``(lora_a, lora_b)``, numpy shapes (rank, n_embd) and (n_vocab, rank),
        scaled so that ``lora_b @ lora_a`` changes a text token's logit by
        about :data:`LOGIT_STD` when ``alpha == rank``.
    """
    vocab = tiny_model.build_vocab()
    rng = np.random.default_rng(seed)
    content = tiny_model.D_CONTENT
    n_content = content.stop - content.start
    lora_a = np.zeros((rank, tiny_model.N_EMBD))
    # Unit rows: A @ x has components of std |x| / sqrt(n_content).
    directions = rng.standard_normal((rank, n_content))
    lora_a[:, content] = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    component_std = tiny_model.CONTENT_NORM / np.sqrt(n_content)
    rows = len(vocab.tokens) if n_vocab is None else n_vocab
    lora_b = np.zeros((rows, rank))
    mask = np.zeros(rows, dtype=bool)
    mask[: len(vocab.tokens)] = _text_rows(vocab)
    lora_b[mask] = rng.standard_normal((int(mask.sum()), rank)) * (LOGIT_STD / (component_std * np.sqrt(rank)))
    return lora_a.astype(np.float32), lora_b.astype(np.float32)


def write_tiny_lora(path: str | os.PathLike[str], *, rank: int = 4, alpha: float | None = None,
                    seed: int = 1, fim: bool = False) -> pathlib.Path:
    """Writes a LoRA adapter GGUF for the tiny model to ``path``.

    The same arguments always give the same bytes (about 6 KB at rank 4).

    Args:
        path: Where to write the ``.gguf`` file (parent folders must exist).
        rank: The LoRA rank (1 to 48).
        alpha: ``adapter.lora.alpha``; llama.cpp scales the adapter by
            ``scale * alpha / rank``. Defaults to ``rank`` (so the scale a
            request gives is the effective one).
        seed: Seed of the random weights; different seeds give different text.
        fim: Write it for a model made with ``write_tiny_model(..., fim=True)``
            (whose vocabulary is larger); without it such a model refuses the
            adapter at start-up.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        ValueError: If ``rank`` is out of range or ``alpha`` is not positive.
    """
    n_content = tiny_model.D_CONTENT.stop - tiny_model.D_CONTENT.start
    if not 1 <= rank <= n_content:
        raise ValueError(f"rank must be 1..{n_content}, got {rank}")
    lora_alpha = float(rank) if alpha is None else float(alpha)
    if lora_alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    n_vocab = len(tiny_model.build_vocab().tokens) + (len(tiny_model.FIM_TOKENS) if fim else 0)
    lora_a, lora_b = lora_matrices(rank, seed, n_vocab)
    target = pathlib.Path(path)
    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(f"llamacpp-lite-tiny-lora-r{rank}-s{seed}")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora_alpha)
    writer.add_tensor("output.weight.lora_a", lora_a)
    writer.add_tensor("output.weight.lora_b", lora_b)
    tiny_model.write_and_close(writer)
    return target


def main(argv: list[str] | None = None) -> None:
    """Command line: ``tiny_lora.py PATH [--rank R] [--alpha A] [--seed S] [--fim]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", help="where to write the .gguf file")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fim", action="store_true", help="for a model written with fim=True")
    args = parser.parse_args(argv)
    print(write_tiny_lora(args.path, rank=args.rank, alpha=args.alpha, seed=args.seed, fim=args.fim))


if __name__ == "__main__":
    main()
