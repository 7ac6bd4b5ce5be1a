"""The clients under test, each behind the same small interface.

A driver is built for one base URL and token count N (``max_tokens``), imports its library when
built (so a missing library raises `ImportError` and the harness reports it as unavailable), and
``consume(tools, tally)`` reads one stream to its end, feeding every text delta (or tool-argument
fragment) to a `Tally`. All drivers are used through the async ``consume``; a sync driver simply
does its blocking work inside it, with the event loop idle.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from benchmarks import rawhttp
from benchmarks.wire import TOOL_NAME

__all__ = ["DRIVERS", "Driver", "Tally"]

TOOL_SPEC: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Look something up.",
    "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
}
"""The one tool offered in tool-call runs, as a Strands ToolSpec."""

OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": TOOL_SPEC["description"],
        "parameters": TOOL_SPEC["inputSchema"]["json"],
    },
}
"""The same tool in the OpenAI request format."""

STRANDS_MESSAGES: Any = [{"role": "user", "content": [{"text": "hi"}]}]


class Tally:
    """Checks pieces against the expected ones as they arrive, keeping nothing else.

    Memory stays constant whatever the stream length, so peak RSS measures the client alone.

    Args:
        expected: The pieces the stream should deliver, in order.
    """

    __slots__ = ("_expected", "count", "first_at", "mismatches", "timings")

    def __init__(self, expected: list[str]) -> None:
        self._expected = expected
        self.count = 0
        self.mismatches = 0
        self.first_at = 0.0
        self.timings: dict[str, Any] | None = None
        """The server's `timings` object, where the client exposes it."""

    def add(self, piece: str) -> None:
        """Record one received piece."""
        if self.count == 0:
            self.first_at = time.perf_counter()
        if self.count >= len(self._expected) or piece != self._expected[self.count]:
            self.mismatches += 1
        self.count += 1

    def problem(self) -> str | None:
        """Return what went wrong, or None if every expected piece arrived intact and in order."""
        if self.count != len(self._expected) or self.mismatches:
            return f"got {self.count} of {len(self._expected)} pieces, {self.mismatches} wrong"
        return None


def _strands_piece(event: Mapping[str, Any], tally: Tally) -> None:
    """Feed the text or tool-input delta of a Strands StreamEvent to `tally` (and any server timings)."""
    block = event.get("contentBlockDelta")
    if block is not None:
        delta = block["delta"]
        if "text" in delta:
            tally.add(delta["text"])
        elif "toolUse" in delta:
            tally.add(delta["toolUse"]["input"])
    elif "metadata" in event:
        tally.timings = event["metadata"].get("timings")


def _wire_piece(payload: Any, tally: Tally) -> None:
    """Feed the content or tool-argument delta of one decoded chat.completion.chunk to `tally`.

    The usage chunk (``choices: []``, asked for by every driver here) gives the server's timings.
    """
    choices = payload.get("choices")
    if choices:
        delta = choices[0]["delta"]
        content = delta.get("content")
        if content:
            tally.add(content)
        for call in delta.get("tool_calls") or ():
            tally.add(call["function"]["arguments"])
    else:
        tally.timings = payload.get("timings")


class Driver:
    """A client under test.

    Args:
        base_url: The server, ``http://127.0.0.1:PORT[/options]``.
        n: Tokens per stream (sent as ``max_tokens``).
        extra: More top-level request fields (e.g. ``ignore_eos`` for a real server).

    Raises:
        ImportError: If the client library is not installed.
    """

    name: ClassVar[str]
    """Short identifier used on the command line and in results."""
    label: ClassVar[str]
    """Human-readable name for the results table."""
    imports: ClassVar[str]
    """The import statement the driver needs: run to check availability and to time imports."""
    is_async: ClassVar[bool] = False

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        self.base_url = base_url
        self.n = n
        self.extra = extra or {}

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Read one whole stream (text, or a tool call if `tools`) and feed its pieces to `tally`."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""


class FloorDriver(Driver):
    """Raw socket, 64 KiB reads, split on blank lines, ``json.loads`` per event: the practical limit."""

    name = "floor"
    label = "floor (raw socket)"
    imports = "import json, socket"

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, n, extra)
        self._target = rawhttp.Target(base_url)
        self._sock: socket.socket | None = None

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Read one stream over the kept-alive socket (opening one if needed)."""
        if self._sock is None:
            self._sock = socket.create_connection((self._target.host, self._target.port))
        sock, parser = self._sock, rawhttp.ResponseParser()
        sock.sendall(rawhttp.chat_request(self._target, self.n, tools, self.extra))
        loads = json.loads
        while not parser.done:
            for payload in parser.feed(sock.recv(rawhttp.READ_SIZE)):
                if payload != b"[DONE]":
                    _wire_piece(loads(payload), tally)
        if not parser.keep_alive:
            await self.close()

    async def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class AsyncFloorDriver(Driver):
    """The floor on asyncio streams, with a pool of kept-alive connections for concurrent streams."""

    name = "floor_async"
    label = "floor (asyncio)"
    imports = "import asyncio, json"
    is_async = True

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, n, extra)
        self._target = rawhttp.Target(base_url)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Read one stream on an idle pooled connection, or a new one."""
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self._target.host, self._target.port)
        parser = rawhttp.ResponseParser()
        writer.write(rawhttp.chat_request(self._target, self.n, tools, self.extra))
        loads = json.loads
        while not parser.done:
            for payload in parser.feed(await reader.read(rawhttp.READ_SIZE)):
                if payload != b"[DONE]":
                    _wire_piece(loads(payload), tally)
        if parser.keep_alive:
            self._idle.append((reader, writer))
        else:
            writer.close()

    async def close(self) -> None:
        """Close every pooled connection."""
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class RequestsSseclientDriver(Driver):
    """``requests.Session`` + ``sseclient.SSEClient`` + ``json.loads``: the layer below llamacpp_lite.

    sseclient is fed whole network reads (``iter_content(chunk_size=None)``), as llamacpp_lite feeds it,
    not the 128-byte pieces that iterating the response itself would give.
    """

    name = "requests_sseclient"
    label = "requests+sseclient"
    imports = "import requests, sseclient"

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, n, extra)
        import requests
        import sseclient

        self._session = requests.Session()
        self._sse = sseclient.SSEClient
        self._url = base_url.rstrip("/") + "/v1/chat/completions"

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Post with ``stream=True`` and read the events through sseclient."""
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": self.n,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra,
        }
        if tools:
            body["tools"] = [OPENAI_TOOL]
        loads = json.loads
        with self._session.post(self._url, json=body, stream=True) as response:
            response.raise_for_status()
            for event in self._sse(response.iter_content(chunk_size=None)).events():
                if event.data != "[DONE]":
                    _wire_piece(loads(event.data), tally)

    async def close(self) -> None:
        """Close the session."""
        self._session.close()


class LiteSyncDriver(Driver):
    """``llamacpp_lite.LlamaCppModel.stream``, iterated synchronously."""

    name = "lite_sync"
    label = "llamacpp_lite sync"
    imports = "from llamacpp_lite import LlamaCppModel"

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, n, extra)
        from llamacpp_lite import LlamaCppModel

        self._model = LlamaCppModel(base_url=base_url, params={"max_tokens": n, **self.extra})

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Iterate ``stream("hi")`` to the end."""
        for event in self._model.stream("hi", tool_specs=[TOOL_SPEC] if tools else None):
            _strands_piece(event, tally)

    async def close(self) -> None:
        """Close the model's connections if it has a ``close``."""
        close = getattr(self._model, "close", None)
        if close is not None:
            close()


class LiteAsyncDriver(Driver):
    """``llamacpp_lite.AsyncLlamaCppModel.stream``, iterated with ``async for``."""

    name = "lite_async"
    label = "llamacpp_lite async"
    imports = "from llamacpp_lite import AsyncLlamaCppModel"
    is_async = True

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, n, extra)
        from llamacpp_lite import AsyncLlamaCppModel

        self._model = AsyncLlamaCppModel(base_url=base_url, params={"max_tokens": n, **self.extra})

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Iterate ``stream("hi")`` to the end."""
        async for event in self._model.stream("hi", tool_specs=[TOOL_SPEC] if tools else None):
            _strands_piece(event, tally)

    async def close(self) -> None:
        """Close the model's connections if it has an ``aclose`` or ``close``."""
        for name in ("aclose", "close"):
            close = getattr(self._model, name, None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
                return


class StrandsDriver(Driver):
    """The Strands Agents SDK's own ``strands.models.llamacpp.LlamaCppModel`` (a peer)."""

    name = "strands"
    label = "strands LlamaCppModel (peer)"
    imports = "from strands.models.llamacpp import LlamaCppModel"
    is_async = True

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, n, extra)
        from strands.models.llamacpp import LlamaCppModel

        self._model = LlamaCppModel(base_url=base_url, params={"max_tokens": n, **self.extra})

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Iterate ``stream(messages, tool_specs)`` to the end."""
        tool_specs: Any = [TOOL_SPEC] if tools else None
        async for event in self._model.stream(STRANDS_MESSAGES, tool_specs):
            _strands_piece(event, tally)

    async def close(self) -> None:
        """Close its httpx client."""
        await self._model.client.aclose()


class OpenAIDriver(Driver):
    """The ``openai`` SDK's sync client with ``stream=True`` (a peer)."""

    name = "openai"
    label = "openai sync (peer)"
    imports = "import openai"

    def __init__(self, base_url: str, n: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, n, extra)
        import openai

        self._client = openai.OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="none", max_retries=0)

    async def consume(self, tools: bool, tally: Tally) -> None:
        """Iterate the chunk stream to the end."""
        tool_args: dict[str, Any] = {"tools": [OPENAI_TOOL]} if tools else {}
        stream = self._client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=self.n,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=self.extra or None,
            **tool_args,
        )
        for chunk in stream:
            if chunk.choices:
                delta = chunk.choices[0].delta
                if delta.content:
                    tally.add(delta.content)
                for call in delta.tool_calls or ():
                    tally.add(call.function.arguments)
            else:
                tally.timings = (chunk.model_extra or {}).get("timings")

    async def close(self) -> None:
        """Close the client."""
        self._client.close()


DRIVERS: dict[str, type[Driver]] = {
    cls.name: cls
    for cls in (
        FloorDriver,
        AsyncFloorDriver,
        RequestsSseclientDriver,
        LiteSyncDriver,
        LiteAsyncDriver,
        StrandsDriver,
        OpenAIDriver,
    )
}
"""Every driver by name, the floor first."""
