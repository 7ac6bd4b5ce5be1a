"""Tiny, valid media files in every format llama-server decodes, written here byte by byte.

Images are 8x8 (a gradient; JPEG is flat grey; GIF 1x1), audio lasts a second (MP3: 44.1 kHz
frames of zeros, which decode as silence; FLAC: 16 kHz silence); PNG and WAV come from
`llamacpp_lite.testing.media`. Each writer is the smallest correct encoding of its
format that stb_image (images) or miniaudio (wav, mp3, flac) accepts; `tests/test_media_real.py`
checks them against a real llama-server, which is the point of having them.
"""

from __future__ import annotations

import struct
from typing import Callable

from llamacpp_lite.testing.media import tiny_png, tiny_wav

SIDE = 8
PIXELS = [(x * 32, y * 32, 128) for y in range(SIDE) for x in range(SIDE)]  # RGB, rows top to bottom


def jpeg() -> bytes:
    """Baseline JPEG, one 8x8 grey block: DC difference 0 then end-of-block, one-code Huffman tables."""
    def segment(marker: int, data: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data

    one_code = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1, for symbol 0
    return (b"\xff\xd8"
            + segment(0xDB, b"\x00" + b"\x01" * 64)                            # quantisation table 0
            + segment(0xC0, struct.pack(">BHHB", 8, SIDE, SIDE, 1) + b"\x01\x11\x00")  # 1 component
            + segment(0xC4, b"\x00" + one_code)                                # DC table 0
            + segment(0xC4, b"\x10" + one_code)                                # AC table 0
            + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")                       # scan of component 1
            + b"\x3f"                                                          # bits 0 (DC), 0 (EOB), padding
            + b"\xff\xd9")


def gif() -> bytes:
    """GIF89a 1x1 with a two-colour table: the classic minimal image (LZW codes clear, 0, end)."""
    return (b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\xff\x80\x00" + b"\x00\x00\x00"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00" + b"\x3b")


def bmp() -> bytes:
    row_size = (SIDE * 3 + 3) // 4 * 4
    rows = b"".join(  # bottom-up, BGR, padded to 4 bytes
        bytes(c for p in PIXELS[y * SIDE:(y + 1) * SIDE] for c in p[::-1]).ljust(row_size, b"\x00")
        for y in reversed(range(SIDE))
    )
    info = struct.pack("<IiiHHIIiiII", 40, SIDE, SIDE, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(rows), 0, 0, 14 + len(info)) + info + rows


def tga() -> bytes:
    header = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, SIDE, SIDE, 24, 0x20)  # top-left origin
    return header + bytes(c for p in PIXELS for c in p[::-1])


def psd() -> bytes:
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, SIDE, SIDE, 8, 3)  # 3 channels, 8 bit, RGB
    planes = b"".join(bytes(p[channel] for p in PIXELS) for channel in range(3))
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + planes  # empty sections, raw data


def hdr() -> bytes:
    header = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {SIDE} +X {SIDE}\n".encode()
    return header + bytes(c for p in PIXELS for c in (p[0], p[1], p[2], 128))  # flat RGBE, no run-length


def ppm() -> bytes:
    return f"P6\n{SIDE} {SIDE}\n255\n".encode() + bytes(c for p in PIXELS for c in p)


def pgm() -> bytes:
    return f"P5\n{SIDE} {SIDE}\n255\n".encode() + bytes(p[0] for p in PIXELS)


RATE = 16000


def mp3(seconds: float = 1.0) -> bytes:
    """MPEG-1 Layer III, 128 kbit/s, 44.1 kHz mono: frames of header + zero side info and data."""
    frame = b"\xff\xfb\x90\xc4" + bytes(417 - 4)  # 144 * 128000 // 44100 = 417 bytes, no padding
    return frame * max(12, round(seconds * 44100 / 1152))


def _crc(data: bytes, width: int, poly: int) -> int:
    crc, top, mask = 0, 1 << (width - 1), (1 << width) - 1
    for byte in data:
        crc ^= byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    return crc


def flac(seconds: float = 1.0) -> bytes:
    """FLAC, 16 kHz 16-bit mono, frames of 4096 samples with one CONSTANT (zero) subframe each."""
    block, frames = 4096, max(1, round(seconds * RATE / 4096))
    info = struct.pack(">HH", block, block) + bytes(6)  # block sizes; frame sizes unknown (0)
    info += ((RATE << 44) | (0 << 41) | (15 << 36) | (block * frames)).to_bytes(8, "big") + bytes(16)
    out = b"fLaC" + b"\x80" + len(info).to_bytes(3, "big") + info  # last metadata block: STREAMINFO
    for number in range(frames):  # frame numbers < 128 are one UTF-8 byte
        header = b"\xff\xf8" + b"\xc0" + b"\x08" + bytes([number])  # 4096 samples, rate from STREAMINFO, mono, 16-bit
        header += bytes([_crc(header, 8, 0x07)])
        frame = header + b"\x00" + b"\x00\x00"  # CONSTANT subframe, value 0
        out += frame + _crc(frame, 16, 0x8005).to_bytes(2, "big")
    return out


IMAGES: dict[str, Callable[[], bytes]] = {
    "png": tiny_png, "jpeg": jpeg, "jpg": jpeg, "gif": gif, "bmp": bmp, "tga": tga, "psd": psd, "hdr": hdr,
    "pnm": ppm, "ppm": ppm, "pgm": pgm,
}
AUDIO: dict[str, Callable[[], bytes]] = {"wav": tiny_wav, "mp3": mp3, "flac": flac}
