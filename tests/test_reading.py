"""Reading bodies off the socket: however the answer's bytes are cut into TCP segments.

The transport reads what http.client buffered with the headers first, then reads into a buffer
of its own; a read must never wait for bytes that are already there.
"""

from __future__ import annotations

import json
import time

import pytest

from tests import fault_server as fs
from tests.helpers import elapsed


def whole_answer_in_one_send(*pieces: str, gap: float = 0.0) -> fs.Handler:
    """Send the status line, the headers and the whole chunked stream with one `sendall`
    (so http.client holds the body in its buffer when the headers are parsed), keep-alive;
    with `gap`, the terminating chunk comes `gap` seconds later, in a second send."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in map(fs.sse_event, fs.text_chunks(*pieces)))
    body += b"%x\r\n%s\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n")
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Keep-Alive: timeout=5, max=100\r\n\r\n")

    def handler(conn: fs.Connection, request: fs.Request) -> None:
        if gap:
            conn.send(head + body)
            time.sleep(gap)
            conn.end_chunks()
        else:
            conn.send(head + body + b"0\r\n\r\n")

    return handler


@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["all at once", "end of body later"])
def test_an_answer_buffered_with_its_headers_is_read_without_waiting(server, make_model, gap):
    server.default = whole_answer_in_one_send("a", "b" * 5000, "c", gap=gap)  # a body of about 5.5 KiB
    model = make_model(server.url)  # read timeout 2 s: a read that waited would fail the call
    for _ in range(3):
        result, seconds = elapsed(model.chat, "hi")
        assert not isinstance(result, Exception), result
        assert result.text == "a" + "b" * 5000 + "c"
        assert seconds < 1.5
    assert server.connections == 1  # each body read to its end: the connection went back to the pool


def test_a_json_answer_buffered_with_its_headers(server, make_model):
    body = json.dumps({"tokens": list(range(2000))}).encode()
    server.default = fs.respond(200, body, content_type="application/json")
    model = make_model(server.url)
    for _ in range(3):
        result, seconds = elapsed(model.tokenize, "hi")
        assert result == list(range(2000)) and seconds < 1.5
