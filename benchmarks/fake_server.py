"""A threaded stand-in for llama-server on 127.0.0.1 that sends pre-rendered streams.

Standard library only. ``POST .../v1/chat/completions`` answers with llama-server's exact SSE wire
format (see `benchmarks.wire`); ``GET .../health`` answers ``200 {"status":"ok"}``. Like the real
server it speaks HTTP/1.1 keep-alive (``Keep-Alive: timeout=5, max=100``: idle connections close
after 5 s, and a connection closes after its 100th request), and it counts accepted connections.

What to send is chosen by the request:

* ``max_tokens`` (or ``max_completion_tokens``/``n_predict``): the number of tokens N;
* a non-empty ``tools`` list: stream one tool call of N argument fragments instead of N text pieces;
* ``stream`` false: one non-streamed JSON answer;
* pacing, by path segments of the form ``key=value`` before ``/v1/...`` (so every client can be
  pointed at it through its base URL alone): ``tps=<tokens per second>`` paces the tokens and
  ``ttft_ms=<ms>`` delays the first one, e.g. ``http://127.0.0.1:PORT/tps=200/ttft_ms=20``.

Unpaced bodies are rendered once and sent with a single ``sendall``, so the server costs a small
fraction of a microsecond of CPU per token; each serving thread measures its own CPU time
(`time.thread_time`) from reading the request to the last byte sent, and the harness reports it.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from benchmarks import wire

__all__ = ["FakeLlamaServer"]

_MAX_REQUESTS_PER_CONNECTION = 100
_KEEP_ALIVE_TIMEOUT_S = 5.0
_DEFAULT_TOKENS = 16


class _Server(socketserver.ThreadingTCPServer):
    """A thread-per-connection TCP server that counts the connections it accepts."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.accepted = 0
        self.requests = 0
        self.stream_cpu_s = 0.0
        self.stream_tokens = 0
        self._lock = threading.Lock()

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection and count it."""
        conn = super().get_request()
        with self._lock:
            self.accepted += 1
        return conn

    def count_request(self) -> None:
        """Count one HTTP request."""
        with self._lock:
            self.requests += 1

    def count_stream(self, cpu_s: float, tokens: int) -> None:
        """Add the CPU time the server spent on one unpaced stream of `tokens` tokens."""
        with self._lock:
            self.stream_cpu_s += cpu_s
            self.stream_tokens += tokens


def _options(path: str) -> dict[str, float]:
    """Return the ``key=value`` path segments of `path` as numbers."""
    options = {}
    for segment in path.split("?")[0].split("/"):
        key, sep, value = segment.partition("=")
        if sep:
            options[key] = float(value)
    return options


def _token_count(body: dict[str, Any]) -> int:
    """Return the number of tokens a request asks for."""
    for key in ("max_tokens", "max_completion_tokens", "n_predict"):
        if isinstance(body.get(key), int) and body[key] > 0:
            return int(body[key])
    return _DEFAULT_TOKENS


class _Handler(BaseHTTPRequestHandler):
    """Serves /health and chat completions; one instance per connection."""

    protocol_version = "HTTP/1.1"
    timeout = _KEEP_ALIVE_TIMEOUT_S
    server: _Server

    def setup(self) -> None:
        """Prepare the connection and its request counter; no Nagle delay, so paced tokens leave at once."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.served = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Log nothing: the benchmark's output is the results table."""

    def _send_json(self, status: int, body: bytes) -> None:
        """Send a complete JSON response in one write; the connection stays open unless it is spent."""
        head = (
            f"HTTP/1.1 {status} {self.responses[status][0]}\r\n"
            "Server: llama.cpp\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{'Connection: close' if self.close_connection else 'Keep-Alive: timeout=5, max=100'}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)

    def handle_one_request(self) -> None:
        """Serve one request; the keep-alive timeout applies only while waiting for it."""
        self.connection.settimeout(self.timeout)
        super().handle_one_request()

    def _begin(self) -> bool:
        """Start answering a request: lift the idle timeout (a slow reader may take long) and count it.

        Returns:
            True if this is the connection's last allowed request (it is then marked to close).
        """
        self.connection.settimeout(None)
        self.server.count_request()
        self.served += 1
        if self.served >= _MAX_REQUESTS_PER_CONNECTION:
            self.close_connection = True
        return self.close_connection

    def do_GET(self) -> None:
        """Answer /health like a loaded llama-server, and 404 elsewhere."""
        self._begin()
        if self.path.split("?")[0].endswith("/health"):
            self._send_json(200, b'{"status":"ok"}')
        else:
            self._send_json(404, b'{"error":{"message":"File Not Found","type":"not_found_error","code":404}}')

    def do_POST(self) -> None:
        """Answer a chat completion, streamed or not, as chosen by the request."""
        cpu = time.thread_time()
        last = self._begin()
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.split("?")[0].endswith("/chat/completions"):
            self._send_json(404, b'{"error":{"message":"File Not Found","type":"not_found_error","code":404}}')
            return
        body = json.loads(raw)
        tools, n = bool(body.get("tools")), _token_count(body)
        if not body.get("stream"):
            self._send_json(200, wire.completion_json(tools, n))
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = wire.STREAM_HEADERS + (b"Connection: close\r\n\r\n" if last else b"\r\n")
        options = _options(self.path)
        if options.get("tps", 0) > 0 or options.get("ttft_ms", 0) > 0:
            self._send_paced(head, tools, n, include_usage, options)
        else:
            self.wfile.write(head)
            self.wfile.write(wire.stream_body(tools, n, include_usage))
            self.server.count_stream(time.thread_time() - cpu, n)

    def _send_paced(self, head: bytes, tools: bool, n: int, include_usage: bool, options: dict[str, float]) -> None:
        """Send the headers at once, the first token after ``ttft_ms``, then ``tps`` tokens a second."""
        events = [wire.chunk_frame(event) for event in wire.stream_events(tools, n, include_usage)]
        self.wfile.write(head)
        start = time.perf_counter() + options.get("ttft_ms", 0.0) / 1000.0
        interval = 1.0 / options["tps"] if options.get("tps", 0) > 0 else 0.0
        # The role event goes out with the first token, as llama-server sends both after prompt processing.
        batches = [events[0] + events[1], *events[2 : n + 1]]
        for i, batch in enumerate(batches):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.wfile.write(batch)
        self.wfile.write(b"".join(events[n + 1 :]) + wire.LAST_CHUNK)


class FakeLlamaServer:
    """The fake llama-server, serving from background threads of this process.

    Use it as a context manager; the server is shut down and its socket closed on exit.

    Example:
        >>> with FakeLlamaServer() as server:
        ...     server.url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-llama-server", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def accepted(self) -> int:
        """How many TCP connections have been accepted so far."""
        return self._server.accepted

    @property
    def requests(self) -> int:
        """How many HTTP requests have been received so far."""
        return self._server.requests

    @property
    def stream_cpu(self) -> tuple[float, int]:
        """CPU seconds the serving threads spent on unpaced streams so far, and the tokens they sent."""
        return self._server.stream_cpu_s, self._server.stream_tokens

    def __enter__(self) -> FakeLlamaServer:
        """Start serving."""
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
