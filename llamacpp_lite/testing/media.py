"""Small deterministic media files (PNG images, WAV audio) for multimodal tests.

Standard library only: the bytes are built in memory and can be sent as a
``data:image/png;base64,...`` URI in an ``image_url`` part or as base64 in an
``input_audio`` part (``"format": "wav"``).
"""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib

__all__ = ["tiny_png", "tiny_wav"]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """Returns one PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    """Returns an RGB PNG with a colour gradient.

    Args:
        width: Width in pixels (1 to 4096).
        height: Height in pixels (1 to 4096).

    Returns:
        The PNG file's bytes.

    Raises:
        ValueError: If a dimension is out of range.
    """
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError(f"PNG size must be 1..4096 pixels a side, got {width}x{height}")
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows += bytes(((x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), 128))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + _png_chunk(b"IEND", b""))


def tiny_wav(seconds: float = 1.0, sample_rate: int = 16000, frequency: float = 440.0) -> bytes:
    """Returns a mono 16-bit PCM WAV holding a sine tone.

    Args:
        seconds: Duration (0 gives a WAV with no samples, which llama-server
            rejects with 400).
        sample_rate: Samples per second (the server resamples to 16 kHz).
        frequency: Tone frequency in Hz.

    Returns:
        The WAV file's bytes.

    Raises:
        ValueError: If ``seconds`` is negative or ``sample_rate`` not positive.
    """
    if seconds < 0 or sample_rate <= 0:
        raise ValueError(f"need seconds >= 0 and sample_rate > 0, got {seconds} and {sample_rate}")
    n_samples = int(round(seconds * sample_rate))
    step = 2 * math.pi * frequency / sample_rate
    samples = struct.pack(f"<{n_samples}h", *(int(8000 * math.sin(step * i)) for i in range(n_samples)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples)
    return buffer.getvalue()
