"""Pure byte-level reading: HTTP/1.1 chunked framing and bounded content decoding.

No sockets here: the transport feeds network reads in and gets body bytes out, so both parsers
can be tested (and fuzzed) with any split of their input. Every buffer is bounded: a framing
line, a chunk's trailers, and the output of a decompressor per call.
"""

from __future__ import annotations

import zlib
from typing import Optional

from ._errors import StreamError

__all__ = ["Dechunker", "Decompressor", "MAX_LINE"]

MAX_LINE = 4096
"""The longest chunk-size or trailer line accepted, in bytes (urllib3 allows about as much)."""

_MAX_TRAILERS = 64 * 1024


class Dechunker:
    """Undo `Transfer-Encoding: chunked`, one network read at a time.

    `feed(data)` returns the body bytes that `data` completes, joined, so a read holding many
    small chunks (llama-server sends one SSE event per chunk) comes out as one piece. `done`
    turns True once the last chunk and its trailers have been read; any bytes after them are
    an error (HTTP/1.1 without pipelining has none).
    """

    __slots__ = ("_buffer", "_left", "_state", "done")

    _SIZE, _DATA, _DATA_END, _TRAILERS = range(4)

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk still to come
        self._state = self._SIZE
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Return the body bytes that `data` (the next bytes on the wire) completes.

        Raises:
            StreamError: For a malformed size line, a missing CRLF after a chunk, an over-long
                line, or bytes after the end of the body.
        """
        if self.done:
            if data:
                raise StreamError("bytes after the end of a chunked body")
            return b""
        buffer = self._buffer + data if self._buffer else data
        out = []
        pos = 0
        end = len(buffer)
        while pos < end:
            state = self._state
            if state == self._DATA:
                take = min(self._left, end - pos)
                out.append(buffer[pos : pos + take])
                pos += take
                self._left -= take
                if self._left == 0:
                    self._state = self._DATA_END
            elif state == self._SIZE:
                newline = buffer.find(b"\n", pos)
                if newline < 0:
                    if end - pos > MAX_LINE:
                        raise StreamError(f"a chunk-size line is longer than {MAX_LINE} bytes")
                    break
                if newline - pos > MAX_LINE:
                    raise StreamError(f"a chunk-size line is longer than {MAX_LINE} bytes")
                size_text = buffer[pos:newline].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise StreamError("a chunk size is not a hexadecimal number", payload=repr(size_text[:80])) from None
                if size < 0:
                    raise StreamError("a chunk size is negative")
                pos = newline + 1
                if size == 0:
                    self._state = self._TRAILERS
                else:
                    self._left = size
                    self._state = self._DATA
            elif state == self._DATA_END:
                if buffer.startswith(b"\r\n", pos):
                    pos += 2
                elif buffer.startswith(b"\n", pos):  # a bare LF, as some servers send
                    pos += 1
                elif end - pos == 1 and buffer[pos] == 13:  # b"\r": the LF is still to come
                    break
                else:
                    raise StreamError("a chunk is not followed by CRLF")
                self._state = self._SIZE
            else:  # _TRAILERS: header lines, then an empty line
                newline = buffer.find(b"\n", pos)
                if newline < 0:
                    if end - pos > _MAX_TRAILERS:
                        raise StreamError(f"the chunk trailers are longer than {_MAX_TRAILERS} bytes")
                    break
                line = buffer[pos:newline]
                pos = newline + 1
                if line in (b"", b"\r"):
                    self.done = True
                    if pos < end:
                        raise StreamError("bytes after the end of a chunked body")
                    break
        self._buffer = buffer[pos:] if pos < end else b""
        return out[0] if len(out) == 1 else b"".join(out)


class Decompressor:
    """Decode a `gzip` or `deflate` body without ever holding more than `step` new bytes.

    Args:
        encoding: The `Content-Encoding` (`gzip`, `x-gzip` or `deflate`).
        limit: The most decoded bytes the whole body may have; more raises `StreamError`.
        step: The most bytes one call of `feed` / `more` returns.
    """

    __slots__ = ("_inflate", "_gzip", "_pending", "_limit", "_step", "_total", "_head", "_between", "_state",
                 "encoding")

    _DECODING, _BETWEEN, _TRAILING = range(3)

    def __init__(self, encoding: str, *, limit: Optional[int], step: int = 64 * 1024) -> None:
        self.encoding = encoding
        self._gzip = encoding in ("gzip", "x-gzip")
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        # deflate may be zlib-wrapped (RFC 9110) or raw (as some servers send it): the first
        # bytes are kept until the zlib header has been judged, to start again as raw deflate.
        self._head: Optional[bytes] = None if self._gzip else b""
        self._pending = b""
        self._between = b""  # bytes after a gzip member, until they show whether a member follows
        self._state = self._DECODING
        self._limit = limit
        self._step = step
        self._total = 0

    def feed(self, data: bytes) -> bytes:
        """Decode the next compressed bytes; call `more()` until it returns b"" for the rest.

        Raises:
            StreamError: For data that does not decode, or output over the limit.
        """
        if self._state == self._TRAILING:
            return b""
        if self._state == self._BETWEEN:
            self._between += data
            self._next_member()
            return self.more()
        if self._head is not None:
            self._head += data
        self._pending += data
        return self.more()

    def _next_member(self) -> None:
        """After a gzip member: start the next one, or ignore what follows if it is not one."""
        if len(self._between) < 2:
            return
        if self._between[:2] == b"\x1f\x8b":  # another member (RFC 1952 allows several)
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._pending, self._state = self._between, self._DECODING
        else:
            self._state = self._TRAILING
        self._between = b""

    def more(self) -> bytes:
        """Return up to `step` more decoded bytes of what was fed (b"" when nothing is left)."""
        while self._pending and self._state == self._DECODING:
            try:
                out = self._inflate.decompress(self._pending, self._step)
            except zlib.error as exc:
                if self._head is None:
                    raise StreamError(f"the {self.encoding} body does not decode: {exc}") from None
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self._pending, self._head = self._head, None
                continue
            if self._head is not None and len(self._head) >= 2:
                self._head = None  # the zlib header was accepted
            self._pending = self._inflate.unconsumed_tail
            if self._inflate.eof:
                rest, self._pending = self._inflate.unused_data, b""  # (unconsumed_tail repeats it)
                if self._gzip:
                    self._state, self._between = self._BETWEEN, rest
                    self._next_member()
                else:
                    self._state = self._TRAILING
            if out:
                self._total += len(out)
                if self._limit is not None and self._total > self._limit:
                    raise StreamError(f"the {self.encoding} body decodes to more than {self._limit} bytes")
                return out
        return b""
