"""Transport: send a request and read llama-server's answers (JSON, or an SSE stream of JSON).

The only module besides the server launcher that does network I/O. Errors are turned into
library exceptions by `_errors.mapped_errors`; the HTTP response is always closed.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Iterator, Mapping

import requests
import sseclient

from ._errors import StreamError, error_from_response, mapped_errors, preview

__all__ = ["ChunkStream", "request_json"]

_DONE = "[DONE]"
_BODY_LIMIT = 64 * 1024  # bytes read of an error or non-SSE body: enough for any message, bounded
_READ_SIZE = 64 * 1024  # at most this much per read of a stream without chunked framing


class _ChunkSource:
    """Feed sseclient whole network reads rather than requests' default 128-byte pieces."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        raw = self._response.raw
        if getattr(raw, "chunked", True) or not hasattr(raw, "read1"):
            return self._response.iter_content(chunk_size=None)  # each HTTP chunk as it arrives
        return self._available(raw)

    @staticmethod
    def _available(raw: Any) -> Iterator[bytes]:
        """Yield what has arrived of a body without chunked framing, one network read at a time.

        Such a body (e.g. from an HTTP/1.0 proxy) ends when the connection closes; requests'
        `iter_content(None)` would read all of it before yielding anything.
        """
        while True:
            data = raw.read1(_READ_SIZE, decode_content=True)
            if not data:
                return
            yield data

    def close(self) -> None:
        self._response.close()


def _start_of_body(response: requests.Response) -> str:
    """Return the first `_BODY_LIMIT` bytes of the body as text, reading no further.

    A proxy's error page, or a hostile server, may send an endless body: reading all of it
    would never end, since each piece arrives within the read timeout.
    """
    data = b""
    with mapped_errors():
        for piece in response.iter_content(chunk_size=8192):
            data += piece
            if len(data) >= _BODY_LIMIT:
                break
    return data[:_BODY_LIMIT].decode(response.encoding or "utf-8", errors="replace")


def _raise_for_status(response: requests.Response) -> None:
    if response.status_code >= 400:
        raise error_from_response(response.status_code, _start_of_body(response))


def request_json(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: Any,
    json_body: Mapping[str, Any] | None = None,
) -> Any:
    """Send a request and return its decoded JSON answer.

    Raises:
        APIError: For an error status (the most specific subclass).
        TransportError: When the exchange failed.
        StreamError: When a 2xx answer is not JSON.
    """
    with mapped_errors():
        # stream=True: an error body is read only as far as `_start_of_body` goes. `verify`: see ChunkStream.
        response = session.request(method, url, json=json_body, timeout=timeout, stream=True, verify=session.verify)
        try:
            _raise_for_status(response)
            text = response.text
        finally:
            response.close()
    try:
        return json.loads(text)
    except ValueError:
        raise StreamError(f"{method} {url} answered {response.status_code} with a body that is not JSON", payload=text) from None


class ChunkStream:
    """One streaming POST: iterate it for the decoded `data:` payloads until `[DONE]`.

    The response is closed when iteration ends, fails, or `close()` is called; `abort()` may
    be called from another thread to unblock a read in progress. Closing makes llama-server
    cancel the generation and free its slot.
    """

    def __init__(self, session: requests.Session, url: str, body: Mapping[str, Any], *, timeout: Any) -> None:
        self._session = session
        self._url = url
        self._body = body
        self._timeout = timeout
        self._response: requests.Response | None = None
        self._aborted = False

    def __iter__(self) -> Iterator[Any]:
        """Send the request and yield each payload.

        Raises:
            APIError: For an error status before the stream began (e.g. context overflow).
            TransportError: When the connection could not be made or timed out.
            StreamError: For a body that is not an SSE stream, a payload that is not JSON, an
                `error` object inside the stream, or a stream that ends before `[DONE]`.
        """
        with mapped_errors():
            # `verify` passed per request wins over $REQUESTS_CA_BUNDLE (psf/requests#3829).
            response = self._session.post(
                self._url, json=self._body, stream=True, timeout=self._timeout, verify=self._session.verify
            )
        self._response = response
        try:
            if self._aborted:
                return
            _raise_for_status(response)
            yield from _payloads(response)
        finally:
            response.close()

    def abort(self) -> None:
        """Shut the connection down from any thread; a blocked read then returns at once."""
        self._aborted = True
        connection = getattr(getattr(self._response, "raw", None), "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


def _payloads(response: requests.Response) -> Iterator[Any]:
    content_type = response.headers.get("Content-Type", "")
    if not content_type.startswith("text/event-stream"):
        raise StreamError(
            f"expected an event stream, got {response.status_code} {content_type or 'no content type'}",
            payload=_start_of_body(response),
            status_code=response.status_code,
        )
    done = False
    with mapped_errors(streaming=True, status_code=response.status_code):
        for event in sseclient.SSEClient(_ChunkSource(response)).events():
            data = event.data
            if done:
                raise StreamError("data after [DONE]", payload=data, status_code=response.status_code)
            if data == _DONE:
                done = True  # keep reading to the end so the connection goes back to the pool
                continue
            try:
                payload = json.loads(data)
            except ValueError:
                raise StreamError("a stream event is not JSON", payload=data, status_code=200) from None
            if event.event == "error" or (type(payload) is dict and "error" in payload):
                error = payload.get("error", payload) if type(payload) is dict else payload
                message = error.get("message", preview(error)) if isinstance(error, dict) else preview(error)
                raise StreamError(
                    f"the server reported an error during the stream: {message}",
                    status_code=response.status_code,
                    error=error if isinstance(error, dict) else None,
                )
            yield payload
    if not done:
        raise StreamError("the stream ended before [DONE]", status_code=response.status_code)
