"""Transport: send a request and read llama-server's answers (JSON, or an SSE stream of JSON).

The only module besides the server launcher that does network I/O. Errors are turned into
library exceptions by `_errors.mapped_errors`; the HTTP response is always closed.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any, Iterator, Mapping

import requests
import sseclient

from ._errors import StreamError, error_from_response, mapped_errors, preview

__all__ = ["ChunkStream", "request_json"]

logger = logging.getLogger(__name__)

_DONE = "[DONE]"


class _ChunkSource:
    """Feed sseclient whole network reads rather than requests' default 128-byte pieces."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        return self._response.iter_content(chunk_size=None)

    def close(self) -> None:
        self._response.close()


def _raise_for_status(response: requests.Response) -> None:
    if response.status_code >= 400:
        with mapped_errors():
            text = response.text
        raise error_from_response(response.status_code, text)


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
        response = session.request(method, url, json=json_body, timeout=timeout)
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
            response = self._session.post(self._url, json=self._body, stream=True, timeout=self._timeout)
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
        with mapped_errors():
            text = response.text
        raise StreamError(
            f"expected an event stream, got {response.status_code} {content_type or 'no content type'}",
            payload=text,
            status_code=response.status_code,
        )
    done = False
    with mapped_errors(streaming=True):
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
