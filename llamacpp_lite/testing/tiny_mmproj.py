"""Deterministic generator of a tiny multimodal projector (mmproj) GGUF.

llama-server loads it next to the tiny text model (``-m tiny.gguf --mmproj
proj.gguf``) and then accepts images (``image_url`` parts) and audio
(``input_audio`` parts). The weights are seeded random numbers, so the answers
mean nothing, but the media really reach the model: each image adds
:data:`TOKENS_PER_IMAGE` prompt tokens and each started 30 s of audio adds
:data:`TOKENS_PER_AUDIO_CHUNK`, which a test can see in ``usage.prompt_tokens``.

One file carries both encoders, each with its own projector type
(``clip.vision.projector_type`` and ``clip.audio.projector_type``; the legacy
``clip.projector_type`` must not be set, it would override both):

* vision: ``mlp`` (LLaVA-1.5 style), 32x32 images cut in 8x8 patches
  (16 patches), 2 blocks of width 32, projected to the text width 64;
* audio: ``ultravox`` (a Whisper encoder and the Ultravox projector), 128 mel
  bins, 1 block of width 32, 1500 positions, stack factor 20 (it must divide
  1500: with Ultravox's real value 8 the first audio request aborts the
  server), projected to 64.

The projector's output width must equal the text model's ``n_embd`` (64 for
:mod:`llamacpp_lite.testing.tiny_model`), or the server exits at start-up.

Usage::

    python -m llamacpp_lite.testing mmproj /tmp/tiny-mmproj.gguf [--no-vision] [--no-audio]
"""

from __future__ import annotations

import argparse
import os
import pathlib

import gguf
import numpy as np

from llamacpp_lite.testing.tiny_model import write_and_close

__all__ = [
    "AUDIO_CHUNK_SECONDS",
    "TOKENS_PER_AUDIO_CHUNK",
    "TOKENS_PER_IMAGE",
    "write_tiny_mmproj",
]

SEED = 20261203
TEXT_N_EMBD = 64  # the tiny text model's n_embd: the projectors' output width
LN_EPS = 1e-5
WEIGHT_STD = 0.1

# Vision encoder (mlp projector).
IMAGE_SIZE = 32
PATCH_SIZE = 8
V_N_EMBD = 32
V_N_FF = 64
V_N_LAYER = 2
V_N_HEAD = 2
V_MM_HIDDEN = 64
N_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

# Audio encoder (ultravox projector).
N_MEL_BINS = 128
A_N_EMBD = 32
A_N_FF = 64
A_N_LAYER = 1
A_N_HEAD = 2
A_N_POSITIONS = 1500  # Whisper's 30 s window after the stride-2 convolution
STACK_FACTOR = 20

#: Prompt tokens one image adds, whatever its size (every image is resized to 32x32).
TOKENS_PER_IMAGE = N_PATCHES
#: The server cuts audio into chunks of this many seconds (hard-coded in llama.cpp).
AUDIO_CHUNK_SECONDS = 30
#: Prompt tokens each started audio chunk adds: 1500 positions / stack factor 20.
TOKENS_PER_AUDIO_CHUNK = A_N_POSITIONS // STACK_FACTOR


def _vision_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Builds the vision encoder and its mlp projector.

    Shapes are numpy shapes, the reverse of ggml's ``ne``. ``ffn_up`` is
    (n_ff, n_embd) and ``ffn_down`` (n_embd, n_ff): the loader swaps them by a
    shape heuristic otherwise.
    """

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape) * WEIGHT_STD

    tensors: dict[str, np.ndarray] = {
        "v.patch_embd.weight": normal(V_N_EMBD, 3, PATCH_SIZE, PATCH_SIZE).astype(np.float16),
        "v.position_embd.weight": normal(N_PATCHES, V_N_EMBD),
        "v.pre_ln.weight": np.ones(V_N_EMBD),
        "v.pre_ln.bias": np.zeros(V_N_EMBD),
    }
    for layer in range(V_N_LAYER):
        prefix = f"v.blk.{layer}."
        for norm in ("ln1", "ln2"):
            tensors[f"{prefix}{norm}.weight"] = np.ones(V_N_EMBD)
            tensors[f"{prefix}{norm}.bias"] = np.zeros(V_N_EMBD)
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors[f"{prefix}{name}.weight"] = normal(V_N_EMBD, V_N_EMBD)
            tensors[f"{prefix}{name}.bias"] = normal(V_N_EMBD)
        tensors[f"{prefix}ffn_up.weight"] = normal(V_N_FF, V_N_EMBD)
        tensors[f"{prefix}ffn_up.bias"] = normal(V_N_FF)
        tensors[f"{prefix}ffn_down.weight"] = normal(V_N_EMBD, V_N_FF)
        tensors[f"{prefix}ffn_down.bias"] = normal(V_N_EMBD)
    tensors["mm.0.weight"] = normal(V_MM_HIDDEN, V_N_EMBD)
    tensors["mm.0.bias"] = normal(V_MM_HIDDEN)
    tensors["mm.2.weight"] = normal(TEXT_N_EMBD, V_MM_HIDDEN)
    tensors["mm.2.bias"] = normal(TEXT_N_EMBD)
    return tensors


def _audio_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Builds the Whisper-style audio encoder and its Ultravox projector.

    Conv biases are (C, 1) (``ne`` [1, C]); ``attn_k`` has no bias (the
    loader rejects one); the projector's first matrix is twice the output
    width because SwiGLU halves it.
    """

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape) * WEIGHT_STD

    stacked = A_N_EMBD * STACK_FACTOR
    tensors: dict[str, np.ndarray] = {
        "a.conv1d.1.weight": normal(A_N_EMBD, N_MEL_BINS, 3).astype(np.float16),
        "a.conv1d.1.bias": normal(A_N_EMBD, 1),
        "a.conv1d.2.weight": normal(A_N_EMBD, A_N_EMBD, 3).astype(np.float16),
        "a.conv1d.2.bias": normal(A_N_EMBD, 1),
        "a.position_embd.weight": normal(A_N_POSITIONS, A_N_EMBD),
    }
    for layer in range(A_N_LAYER):
        prefix = f"a.blk.{layer}."
        for norm in ("ln1", "ln2"):
            tensors[f"{prefix}{norm}.weight"] = np.ones(A_N_EMBD)
            tensors[f"{prefix}{norm}.bias"] = np.zeros(A_N_EMBD)
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors[f"{prefix}{name}.weight"] = normal(A_N_EMBD, A_N_EMBD)
            if name != "attn_k":
                tensors[f"{prefix}{name}.bias"] = normal(A_N_EMBD)
        tensors[f"{prefix}ffn_up.weight"] = normal(A_N_FF, A_N_EMBD)
        tensors[f"{prefix}ffn_up.bias"] = normal(A_N_FF)
        tensors[f"{prefix}ffn_down.weight"] = normal(A_N_EMBD, A_N_FF)
        tensors[f"{prefix}ffn_down.bias"] = normal(A_N_EMBD)
    tensors["a.post_ln.weight"] = np.ones(A_N_EMBD)
    tensors["a.post_ln.bias"] = np.zeros(A_N_EMBD)
    tensors["mm.a.norm_pre.weight"] = np.ones(stacked)
    tensors["mm.a.mlp.1.weight"] = normal(2 * TEXT_N_EMBD, stacked)
    tensors["mm.a.norm_mid.weight"] = np.ones(TEXT_N_EMBD)
    tensors["mm.a.mlp.2.weight"] = normal(TEXT_N_EMBD, TEXT_N_EMBD)
    return tensors


def _add_vision_keys(writer: gguf.GGUFWriter) -> None:
    """Writes the vision hyper-parameters."""
    writer.add_string("clip.vision.projector_type", "mlp")
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", V_N_EMBD)
    writer.add_uint32("clip.vision.feed_forward_length", V_N_FF)
    writer.add_uint32("clip.vision.block_count", V_N_LAYER)
    writer.add_uint32("clip.vision.attention.head_count", V_N_HEAD)
    writer.add_uint32("clip.vision.projection_dim", TEXT_N_EMBD)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", LN_EPS)
    writer.add_array("clip.vision.image_mean", list(IMAGE_MEAN))
    writer.add_array("clip.vision.image_std", list(IMAGE_STD))


def _add_audio_keys(writer: gguf.GGUFWriter) -> None:
    """Writes the audio hyper-parameters."""
    writer.add_string("clip.audio.projector_type", "ultravox")
    writer.add_uint32("clip.audio.num_mel_bins", N_MEL_BINS)
    writer.add_uint32("clip.audio.embedding_length", A_N_EMBD)
    writer.add_uint32("clip.audio.feed_forward_length", A_N_FF)
    writer.add_uint32("clip.audio.block_count", A_N_LAYER)
    writer.add_uint32("clip.audio.attention.head_count", A_N_HEAD)
    writer.add_uint32("clip.audio.projection_dim", TEXT_N_EMBD)
    writer.add_float32("clip.audio.attention.layer_norm_epsilon", LN_EPS)
    writer.add_uint32("clip.audio.projector.stack_factor", STACK_FACTOR)


def write_tiny_mmproj(path: str | os.PathLike[str], *, vision: bool = True,
                      audio: bool = True) -> pathlib.Path:
    """Writes the tiny multimodal projector to ``path``.

    The same arguments always give the same bytes (seeded weights). The file
    with both encoders is about 0.7 MB (vision only 0.1 MB, audio only
    0.6 MB).

    Args:
        path: Where to write the ``.gguf`` file (parent folders must exist).
        vision: Include the image encoder (``/props`` then reports
            ``modalities.vision``).
        audio: Include the audio encoder (``modalities.audio``).

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        ValueError: If neither encoder is asked for.
    """
    if not (vision or audio):
        raise ValueError("a projector needs at least one encoder: vision=True or audio=True")
    target = pathlib.Path(path)
    writer = gguf.GGUFWriter(str(target), "clip")
    name = "-".join(part for part, wanted in (("vision", vision), ("audio", audio)) if wanted)
    writer.add_name(f"llamacpp-lite-tiny-mmproj-{name}")
    writer.add_bool("clip.has_vision_encoder", vision)
    writer.add_bool("clip.has_audio_encoder", audio)
    tensors: dict[str, np.ndarray] = {}
    # Separate streams, so a vision-only file has the same vision weights as
    # the combined one (and likewise for audio).
    if vision:
        _add_vision_keys(writer)
        tensors.update(_vision_tensors(np.random.default_rng([SEED, 1])))
    if audio:
        _add_audio_keys(writer)
        tensors.update(_audio_tensors(np.random.default_rng([SEED, 2])))
    for tensor_name, array in tensors.items():
        dtype = np.float16 if array.dtype == np.float16 else np.float32
        writer.add_tensor(tensor_name, array.astype(dtype))
    write_and_close(writer)
    return target


def main(argv: list[str] | None = None) -> None:
    """Command line: ``tiny_mmproj.py PATH [--no-vision] [--no-audio]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", help="where to write the .gguf file")
    parser.add_argument("--no-vision", action="store_true", help="leave the image encoder out")
    parser.add_argument("--no-audio", action="store_true", help="leave the audio encoder out")
    args = parser.parse_args(argv)
    print(write_tiny_mmproj(args.path, vision=not args.no_vision, audio=not args.no_audio))


if __name__ == "__main__":
    main()
