"""The pure byte-level readers: chunked framing and bounded decompression, under any split of the input."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamacpp_lite import StreamError
from llamacpp_lite._framing import MAX_LINE, Dechunker, Decompressor

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def chunked(body: bytes, sizes: list, *, extension: bool = False, trailers: bytes = b"") -> bytes:
    out, start = [], 0
    for size in sizes:
        part = body[start:start + size]
        if not part:
            break
        out.append(b"%x%s\r\n%s\r\n" % (len(part), b";ext=1" if extension else b"", part))
        start += len(part)
    if start < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - start, body[start:]))
    return b"".join(out) + b"0\r\n" + trailers + b"\r\n"


def split(data: bytes, cuts: list) -> list:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def dechunk(reads: list) -> tuple[bytes, bool]:
    dechunker = Dechunker()
    return b"".join(dechunker.feed(read) for read in reads), dechunker.done


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=20), st.lists(st.integers(0, 10**6), max_size=30),
       st.booleans(), st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
def test_any_chunking_and_any_split_gives_the_body_back(body, sizes, cuts, extension, trailers):
    wire = chunked(body, sizes, extension=extension, trailers=trailers)
    assert dechunk(split(wire, cuts)) == (body, True)


def test_many_chunks_in_one_read_come_out_as_one_piece():
    wire = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"])
    assert Dechunker().feed(wire) == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"


def test_done_only_after_the_last_chunk_and_its_trailers():
    dechunker = Dechunker()
    assert dechunker.feed(b"3\r\nabc\r\n0\r\n") == b"abc" and not dechunker.done
    assert dechunker.feed(b"\r\n") == b"" and dechunker.done


@pytest.mark.parametrize("wire,match", [
    (b"zz\r\nabc\r\n", "not a hexadecimal"),
    (b"3\r\nabcXY", "not followed by CRLF"),
    (b"1" * (MAX_LINE + 2), "longer than"),
    (b"0\r\n\r\nextra", "after the end"),
])
def test_broken_framing_is_a_stream_error(wire, match):
    with pytest.raises(StreamError, match=match):
        Dechunker().feed(wire)


def test_an_endless_size_line_is_refused_without_growing():
    dechunker = Dechunker()
    with pytest.raises(StreamError, match="longer than"):
        for _ in range(MAX_LINE + 2):
            dechunker.feed(b"1")


def decode(encoding: str, wire: bytes, *, limit=None, step=64 * 1024, reads: int = 97) -> bytes:
    decoder = Decompressor(encoding, limit=limit, step=step)
    out = []
    for start in range(0, len(wire), reads):
        piece = decoder.feed(wire[start:start + reads])
        while piece:
            out.append(piece)
            piece = decoder.more()
    return b"".join(out)


BODY = b"".join(b"data: {\"n\": %d}\n\n" % i for i in range(400))


@pytest.mark.parametrize("encoding,wire", [
    ("gzip", gzip.compress(BODY)),
    ("x-gzip", gzip.compress(BODY)),
    ("gzip", gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])),  # several members
    ("gzip", gzip.compress(BODY) + b"trailing junk"),
    ("deflate", zlib.compress(BODY)),  # zlib-wrapped, as RFC 9110 says
    ("deflate", zlib.compress(BODY)[2:-4]),  # raw, as some servers send it
])
@pytest.mark.parametrize("step", [1, 13, 4096])
def test_compressed_bodies_decode_in_steps(encoding, wire, step):
    assert decode(encoding, wire, step=step, reads=step * 3 + 1) == BODY


def test_a_decompression_bomb_stops_at_the_limit_with_small_steps():
    member = gzip.compress(b"\0" * (1 << 20))  # about 1 KiB on the wire for 1 MiB
    bomb = member * 64
    decoder = Decompressor("gzip", limit=4 << 20, step=64 * 1024)
    largest = 0
    with pytest.raises(StreamError, match="decodes to more than 4194304 bytes"):
        for start in range(0, len(bomb), 8192):
            piece = decoder.feed(bomb[start:start + 8192])
            while piece:
                largest = max(largest, len(piece))
                piece = decoder.more()
    assert largest <= 64 * 1024  # never more than one step at a time


def test_garbage_is_a_stream_error():
    with pytest.raises(StreamError, match="does not decode"):
        decode("gzip", b"this is not gzip at all")
