"""The transport: the only module that knows requests, urllib3 and http.client.

Everything HTTP lives here, as requests keeps urllib3 inside `adapters.py`: the session and its
connection pool, the retry policy, authentication, reading bodies within their limits, and
turning every foreign exception into the library's own. The rest of the package calls
`Transport.request_json`, `request_text` and `stream`, and sees only library types.

Cancellation. Each call may carry a `Call`: `abort()` on it, from any thread, shuts the call's
socket down (also while the request still waits in a busy server's queue, so the server skips
it), ends a retry's back-off at once, and makes the retry policy give up instead of sending the
request again. A `Call` with a deadline is aborted by one shared watchdog thread when it
expires. Connections learn which call they serve through a thread-local set around the send.

Private attributes of dependencies are used in exactly two places, both marked PRIVATE:
`Retry._is_connection_error` (the only hook that classifies an error as "request never
processed") and `response.raw._fp.fp` (http.client's socket file, which urllib3's own chunked
reader uses too): reading it directly lets one network read carry many HTTP chunks. Without it
(e.g. under `responses` mocks) the same reader runs over urllib3's public reads.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import os
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterator, Mapping, Optional

import requests
import requests.adapters
import requests.auth
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from urllib3.util.retry import Retry

from ._config import Limits, TimeoutValue
from ._errors import (
    Aborted,
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    InvalidRequestError,
    LlamaCppError,
    ReadTimeout,
    StreamError,
    TransportError,
    error_from_response,
)
from ._framing import Dechunker, Decompressor
from ._json import decode_json
from ._sse import iter_payloads

__all__ = ["Call", "CancelScope", "DEFAULT_RETRY", "RetryPolicy", "STATUS_WAIT_S", "Transport", "probe_status",
           "retry_policy", "split_credentials"]

_RETRIED_BODY_LIMIT = 64 * 1024  # bytes read of an answer whose request is sent again (503)
_READ_SIZE = 64 * 1024  # bytes asked of the socket per read (less when less has arrived)
# (Hundreds of events per read already; 256 KiB cost no less CPU per token and kept about 6 MiB more in use.)
_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})
_local = threading.local()  # .call: the Call being sent by this thread


# -- cancellation and deadlines ------------------------------------------------------------


class _Abort(Exception):
    """Raised inside urllib3 or a read to unwind a call that was aborted (never leaves here)."""


class Call:
    """One call's cancellation: `abort()` from any thread ends it promptly and for good.

    Args:
        deadline: Seconds the whole call may take, counted from `start()` (the transport calls it
            when the request is sent, so a stream built now and iterated later gets its full
            time); None for no bound.
        retry_status: Retry the statuses the retry policy retries (503 "Loading model"); False
            for a probe whose answer that status is (`/health`).
    """

    __slots__ = ("_lock", "_event", "_connection", "_started", "reason", "deadline", "expires", "retry_status")

    def __init__(self, deadline: Optional[float] = None, *, retry_status: bool = True) -> None:
        self.retry_status = retry_status
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._connection: Any = None
        self._started = False
        self.reason: Optional[str] = None  # "aborted" or "deadline" once aborted
        self.deadline = deadline
        self.expires: Optional[float] = None  # monotonic time the deadline passes, once started
        scope = getattr(_local, "scope", None)
        if scope is not None:
            scope.add(self)

    def start(self) -> bool:
        """Start the deadline's clock, once. Returns True the first time, False after.

        A call made of several requests is started by its owner before the first; the transport
        then leaves the clock running between them (see `finish`).
        """
        if self._started:
            return False
        self._started = True
        if self.deadline is not None and not self._event.is_set():
            self.expires = time.monotonic() + self.deadline
            _WATCHDOG.watch(self, self.expires)
        return True

    def time_left(self) -> Optional[float]:
        """Seconds until the deadline (0 once passed), or None without a running deadline."""
        expires = self.expires
        return None if expires is None else max(0.0, expires - time.monotonic())

    @property
    def aborted(self) -> bool:
        """True once `abort()` was called (or the deadline passed)."""
        return self._event.is_set()

    def ended(self) -> bool:
        """True once aborted or past the deadline (then aborted now, if the watchdog has not yet)."""
        if self._event.is_set():
            return True
        if self.expires is not None and time.monotonic() >= self.expires:
            self.abort("deadline")
            return True
        return False

    def abort(self, reason: str = "aborted") -> None:
        """End the call: shut its socket down and stop any retry. Returns at once."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            connection, self._connection = self._connection, None
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def attach(self, connection: Any) -> None:
        """Remember the connection the call is sent on (so `abort()` can shut it)."""
        with self._lock:
            if self._event.is_set():
                raise _Abort()
            self._connection = connection

    def finish(self, stop_clock: bool = True) -> None:
        """Forget the connection (it may go back to the pool) and, with `stop_clock`, the deadline."""
        with self._lock:
            self._connection = None
        if stop_clock:
            _WATCHDOG.forget(self)

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`; raise at once when the call is aborted meanwhile."""
        left = self.time_left()
        if left is not None and left < seconds:
            if self._event.wait(left):
                raise _Abort()
            self.abort("deadline")  # the watchdog may not have run yet: the deadline has passed all the same
            raise _Abort()
        if self._event.wait(seconds):
            raise _Abort()

    def error(self) -> LlamaCppError:
        """The library exception for this aborted call."""
        if self.reason == "deadline":
            return DeadlineExceeded(f"the call did not finish within its deadline of {self.deadline:g} s")
        return Aborted("the call was aborted")


class CancelScope:
    """Every `Call` made by one thread while the scope runs: `abort()` aborts them all.

    The async shim runs each blocking method in a worker thread inside a scope, so cancelling
    the awaiting task aborts whatever requests that method is making, however it makes them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._aborted = False

    def add(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            aborted = self._aborted
        if aborted:
            call.abort()

    def abort(self) -> None:
        """Abort every call made in the scope so far, and any made later."""
        with self._lock:
            self._aborted = True
            calls = list(self._calls)
        for call in calls:
            call.abort()

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `function` in this thread with the scope active."""
        outer = getattr(_local, "scope", None)
        _local.scope = self
        try:
            return function(*args, **kwargs)
        finally:
            _local.scope = outer


class _Watchdog:
    """One daemon thread that aborts calls whose deadline has passed."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Call]] = []
        self._count = 0
        self._thread: Optional[threading.Thread] = None

    def watch(self, call: Call, expires: float) -> None:
        with self._lock:
            self._count += 1
            heapq.heappush(self._heap, (expires, self._count, call))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="llamacpp-lite-deadlines", daemon=True)
                self._thread.start()
            self._lock.notify()

    def forget(self, call: Call) -> None:
        if call.expires is not None:
            call.expires = None  # a finished call: dropped when it reaches the top of the heap

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._heap:
                    self._lock.wait()
                expires, _, call = self._heap[0]
                now = time.monotonic()
                if call.expires is None:
                    heapq.heappop(self._heap)
                    continue
                if expires > now:
                    self._lock.wait(expires - now)
                    continue
                heapq.heappop(self._heap)
            call.abort("deadline")


_WATCHDOG = _Watchdog()


class _AttachToCall:
    """Connection mixin: tell the thread's current `Call` which connection carries it.

    A connection being made cannot be shut down from another thread (it has no socket yet), so
    a call with a deadline also bounds the connect timeout by the time it has left.
    """

    timeout: Any  # urllib3 sets it before connecting (the connect timeout) and after (the read timeout)

    def request(self, *args: Any, **kwargs: Any) -> None:
        call = getattr(_local, "call", None)
        if call is not None:
            call.attach(self)
        super().request(*args, **kwargs)  # type: ignore[misc]  # the connection class it is mixed into

    def connect(self) -> None:
        call: Optional[Call] = getattr(_local, "call", None)
        left = call.time_left() if call is not None else None
        if call is not None and left is not None:
            if left <= 0:
                call.abort("deadline")
                raise _Abort()
            timeout = self.timeout
            self.timeout = left if not isinstance(timeout, (int, float)) else min(timeout, left)
        super().connect()  # type: ignore[misc]


class AbortableHTTPConnection(_AttachToCall, urllib3.connection.HTTPConnection):
    pass


class AbortableHTTPSConnection(_AttachToCall, urllib3.connection.HTTPSConnection):
    pass


class AbortableHTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = AbortableHTTPConnection


class AbortableHTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = AbortableHTTPSConnection


_POOL_CLASSES = {"http": AbortableHTTPConnectionPool, "https": AbortableHTTPSConnectionPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connections that a `Call` can abort (direct and through proxies)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


# -- retries --------------------------------------------------------------------------------

_NOTHING_RECEIVED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class RetryPolicy(Retry):
    """urllib3's `Retry`, patient with a model that is loading, quick with a server that is not there.

    Two additions to urllib3's counting:

    * `status_wait`: a bound, in seconds, on how long retried statuses (503 "Loading model") are
      retried, counted from the first of them; a count (`status`) still applies if set.
      Back-off waits never run past it, and a `Retry-After` longer than the time left gives up
      at once (the 503 is raised) instead of asking again too early. Without `status_wait`,
      `Retry-After` is honoured up to `backoff_max`.
    * "closed before any response byte" counts as a connect error. llama-server closes the
      connection after every streamed answer although it advertises keep-alive, so a pooled
      connection can be dead by the time the next request is sent on it. Such a request got no
      byte of answer (`RemoteDisconnected`, a reset, a broken pipe). urllib3 cannot tell whether
      the server read it first, but llama-server cancels the work of a client that disconnects,
      so sending it again is as safe as after a refused connection.

    Read timeouts and failures after the first byte of an answer stay read errors (never
    retried by `DEFAULT_RETRY`, whose `read` is 0). A garbled `Retry-After` is ignored. A call
    that was aborted (or passed its deadline) is never sent again, and its back-off ends at once.

    Args:
        *args: urllib3 `Retry`'s arguments.
        status_wait: Seconds retried statuses are retried for at most, or None for no bound.
        status_since: Internal: when the first retried status of this request came
            (`time.monotonic()`); each request starts without one.
        **kwargs: urllib3 `Retry`'s keyword arguments.
    """

    def __init__(self, *args: Any, status_wait: Optional[float] = None, status_since: Optional[float] = None,
                 **kwargs: Any) -> None:
        if status_wait is not None and (isinstance(status_wait, bool) or not isinstance(status_wait, (int, float))
                                        or not 0 <= status_wait < float("inf")):
            raise InvalidRequestError(
                f"status_wait must be a finite number of seconds >= 0 or None, got {status_wait!r}")
        super().__init__(*args, **kwargs)
        self.status_wait = status_wait
        self.status_since = status_since

    def new(self, **kw: Any) -> "RetryPolicy":
        """Return a copy with `kw` changed (urllib3 makes one per attempt); the wait carries over."""
        kw.setdefault("status_wait", self.status_wait)
        kw.setdefault("status_since", self.status_since)
        return super().new(**kw)

    def parse_retry_after(self, retry_after: str) -> float:
        """Honour `Retry-After` (capped at `backoff_max` when there is no `status_wait`); ignore a garbled one."""
        try:
            seconds = super().parse_retry_after(retry_after)
        except urllib3.exceptions.InvalidHeader:
            return 0.0  # neither seconds nor a date: back off as if there were no header
        return seconds if self.status_wait is not None else min(seconds, self.backoff_max)

    def increment(self, method: Optional[str] = None, url: Optional[str] = None, response: Any = None,
                  error: Optional[Exception] = None, _pool: Any = None, _stacktrace: Any = None) -> "RetryPolicy":
        """Count one more failure; give up at once for an aborted call or a status waited on long enough."""
        call = getattr(_local, "call", None)
        if call is not None and call.ended():
            raise _Abort()
        if call is not None and not call.retry_status and error is None and response is not None:
            cause = urllib3.exceptions.ResponseError(f"{response.status}: not retried for this call")
            raise urllib3.exceptions.MaxRetryError(_pool, url or "", cause) from cause
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        if (self.status_wait is not None and error is None and response is not None and response.status
                and not response.get_redirect_location()):
            now = time.monotonic()
            new.status_since = since = self.status_since if self.status_since is not None else now
            left = since + self.status_wait - now
            asked = new.get_retry_after(response) if self.respect_retry_after_header else None
            if left <= 0 or (asked is not None and asked > left):
                after = f" (Retry-After: {asked:g} s)" if asked else ""
                cause = urllib3.exceptions.ResponseError(f"still {response.status} after {now - since:.1f} s{after}")
                raise urllib3.exceptions.MaxRetryError(_pool, url or "", cause) from cause
        if response is not None:
            # The request will be sent again, and urllib3 would read this answer's body to its end
            # first (an endless one would hold the retry forever): read at most the error-body
            # limit here, and close the answer if there is more (its connection is then not reused).
            response.read(_RETRIED_BODY_LIMIT, decode_content=False)
            if not response.isclosed():
                response.close()
        return new

    def sleep(self, response: Any = None) -> None:
        """Wait before the next attempt (`Retry-After`, else the back-off); an abort ends it.

        The wait never runs past `status_wait` (the last attempt is made when it ends).
        """
        seconds = self.get_retry_after(response) if self.respect_retry_after_header and response else None
        if seconds is None:
            seconds = self.get_backoff_time()
        if self.status_wait is not None and self.status_since is not None and response is not None:
            seconds = max(0.0, min(seconds, self.status_since + self.status_wait - time.monotonic()))
        call = getattr(_local, "call", None)
        if call is not None:
            call.wait(seconds)
        elif seconds > 0:
            time.sleep(seconds)

    def _is_connection_error(self, err: Exception) -> bool:
        # PRIVATE (1/2): urllib3's only hook for "the request was not processed".
        if isinstance(err, urllib3.exceptions.ProtocolError) and any(
            isinstance(arg, _NOTHING_RECEIVED) for arg in err.args
        ):
            return True
        return super()._is_connection_error(err)


STATUS_WAIT_S = 120.0
"""How long `DEFAULT_RETRY` waits for a model that is loading (503), in seconds.

Long enough to load a model of a few tens of GB from local disk (llama-server answers every
request with 503 "Loading model" until the weights are read, the context is allocated and a
warm-up run is done) and the same bound llama-swap gives a model to become ready (its
`healthCheckTimeout`, 120 s by default); past it, something is wrong rather than slow.
"""

DEFAULT_RETRY = RetryPolicy(
    total=None,
    connect=3,  # the request never reached the server (or got no answer byte): safe to send again; quick to give up
    read=0,  # the server may have started work: never repeated
    status=None,  # 503 is bounded by time (status_wait), not by a count
    status_wait=STATUS_WAIT_S,
    other=0,
    redirect=None,
    allowed_methods=None,  # POST too: a connect failure or a 503 means nothing was processed
    status_forcelist=(503,),  # "Loading model"
    backoff_factor=0.25,
    backoff_max=8.0,
    backoff_jitter=0.25,
    respect_retry_after_header=True,
    raise_on_status=False,  # after the last try, the 503 itself is mapped (with the server's message)
)
"""Retry connect failures 3 times and 503 (model loading) for up to 120 s, with backoff
0.25 s x 2^n (cap 8 s) plus up to 0.25 s of jitter, or as `Retry-After` says."""



def retry_policy(retry: Any) -> Retry:
    """Return the policy for a model's `retry` argument: None (no retries), a count, or any urllib3 `Retry`.

    Raises:
        InvalidRequestError: For anything else.
    """
    if retry is None:
        return DEFAULT_RETRY.new(connect=0, status=0)
    if isinstance(retry, Retry):
        return retry
    if isinstance(retry, int) and not isinstance(retry, bool) and retry >= 0:
        return DEFAULT_RETRY.new(connect=retry, status=retry)
    raise InvalidRequestError(f"retry must be a urllib3 Retry, a count >= 0 or None, got {retry!r}")

# -- authentication and redirects -------------------------------------------------------------


def split_credentials(url: str) -> tuple[str, Optional[tuple[str, str]]]:
    """Return `url` without `user:pass@`, and the credentials it held (or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    credentials = (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), credentials


class _Auth(requests.auth.AuthBase):
    """The one source of credentials: the API key, else `user:pass@` of the URL, else none.

    Being set on the session, it also keeps requests from reading `~/.netrc`.
    """

    def __init__(self, api_key: Optional[str], basic: Optional[tuple[str, str]]) -> None:
        self._bearer = f"Bearer {api_key}" if api_key else None
        self._basic = requests.auth.HTTPBasicAuth(*basic) if basic and not api_key else None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._bearer is not None:
            request.headers["Authorization"] = self._bearer
        elif self._basic is not None:
            return self._basic(request)  # type: ignore[no-any-return]  # requests' stub says Any
        return request

    def __repr__(self) -> str:
        return "<credentials hidden>"


class _Session(requests.Session):
    """A session that drops credentials AND custom headers when a redirect leaves the server."""

    def __init__(self, private_headers: frozenset[str]) -> None:
        super().__init__()
        self._private_headers = private_headers

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        original = response.request.url or ""
        if self.should_strip_auth(original, prepared_request.url or ""):  # type: ignore[no-untyped-call]
            for name in ("Authorization", "X-Api-Key", *self._private_headers):
                prepared_request.headers.pop(name, None)
        # Unlike requests, never pick up ~/.netrc credentials for the new host.


# -- errors ---------------------------------------------------------------------------------


def translate(exc: BaseException, *, streaming: bool, status_code: Optional[int] = None) -> LlamaCppError:
    """Return the library exception for a foreign one raised while sending or reading.

    Args:
        exc: The exception from requests, urllib3, http.client or the socket.
        streaming: True once the answer has begun: a broken connection then means a broken
            answer (`StreamError`), not a failed connect.
        status_code: The HTTP status of the answer being read.
    """
    cause: Any = exc.args[0] if exc.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError):
        cause = cause.reason
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        isinstance(cause, urllib3.exceptions.ConnectTimeoutError)
        and not isinstance(cause, urllib3.exceptions.NewConnectionError)  # a subclass, for history's sake
    ):
        return ConnectTimeout(f"connect timeout: {exc}")
    if isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)) or isinstance(
        cause, urllib3.exceptions.ReadTimeoutError
    ):
        return ReadTimeout(f"read timeout: the server sent nothing for too long ({exc})")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                        urllib3.exceptions.HTTPError, http.client.HTTPException)):
        return StreamError(f"the stream broke off: {exc}", status_code=status_code)
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return InvalidRequestError("a header cannot be sent as given (its value is not shown)")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema, requests.exceptions.URLRequired)):
        return InvalidRequestError(f"invalid request: {exc}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if streaming:
            return StreamError(f"the stream broke off: {exc}", status_code=status_code)
        if isinstance(cause, urllib3.exceptions.ProtocolError):  # connected, then closed or reset
            return ConnectError(f"the server closed the connection without answering: {exc}")
        return ConnectError(f"cannot connect to the server: {exc}")
    if isinstance(exc, OSError) and not isinstance(exc, requests.exceptions.RequestException):
        # e.g. a reset during a direct read, or a CA bundle that does not exist
        if streaming:
            return StreamError(f"the stream broke off: {exc}", status_code=status_code)
        return ConnectError(f"cannot set up the connection: {exc}")
    return TransportError(f"HTTP transport error: {type(exc).__name__}: {exc}")


_FOREIGN = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


@contextlib.contextmanager
def _mapped(call: Optional[Call], *, streaming: bool = False, status_code: Optional[int] = None) -> Iterator[None]:
    """Translate what the block raises into library exceptions (`from` the original)."""
    try:
        yield
    except LlamaCppError:
        raise
    except _Abort:
        raise (call.error() if call is not None else Aborted("the call was aborted")) from None
    except _FOREIGN as exc:
        if call is not None and call.ended():
            raise call.error() from exc
        raise translate(exc, streaming=streaming, status_code=status_code) from exc
    except ValueError as exc:  # e.g. a read on a file that another thread closed
        if call is not None and call.ended():
            raise call.error() from exc
        if streaming:
            raise StreamError(f"the stream broke off: {exc}", status_code=status_code) from exc
        raise TransportError(f"HTTP transport error: {type(exc).__name__}") from exc


# -- reading bodies ---------------------------------------------------------------------------


def _socket_file(response: requests.Response) -> Any:
    """Return http.client's buffered socket file under `response`, or None (e.g. a mock)."""
    # PRIVATE (2/2): urllib3 keeps http.client's response in `_fp` and reads its `fp` itself.
    http_response = getattr(response.raw, "_fp", None)
    if not isinstance(http_response, http.client.HTTPResponse):
        return None
    fp = getattr(http_response, "fp", None)
    return fp if hasattr(fp, "read1") else None


_FINISH_GRACE_S = 0.2  # after a stream's last event, how long the end of the body is waited for


class _Body:
    """One answer's body, read as it arrives with HTTP framing removed (content still encoded).

    Reads whole network reads from the socket and undoes chunked framing itself, so one piece
    may carry many HTTP chunks; a body read to its end hands the connection back to the pool.
    Where the socket file is not available, urllib3's public reads (one HTTP chunk each) are used.
    """

    def __init__(self, response: requests.Response, call: Optional[Call]) -> None:
        self._response = response
        self._call = call
        self._status = response.status_code
        self._fp_owner: Any = getattr(response.raw, "_fp", None)  # PRIVATE (2/2): see _socket_file
        self._fp = _socket_file(response)
        raw = response.raw
        self._dechunker = Dechunker() if raw.chunked else None
        self._left = None if raw.chunked else raw.length_remaining
        self._timeout_to_restore: Optional[tuple[Any, Any]] = None  # (socket, timeout) during finish()
        self._buffer: Optional[memoryview] = None  # where reads after the first one land
        self.complete = False

    def pieces(self) -> Iterator[bytes]:
        """Yield the body's bytes until its end."""
        if self._fp is None:
            yield from self._library_pieces()
            return
        while not self.complete:
            piece = self._read()
            if piece:
                yield piece

    def _read(self) -> bytes:
        """Read once from the socket; return the body bytes it completes (maybe b"")."""
        left = self._left
        if left == 0:
            self._done()
            return b""
        size = _READ_SIZE if left is None else min(_READ_SIZE, left)
        with _mapped(self._call, streaming=True, status_code=self._status):
            if self._buffer is None:
                # The first read takes what http.client buffered with the headers (or makes one read),
                # which leaves its buffer empty: `readinto1` then makes exactly one read into ours.
                # (`readinto1` would read again after copying buffered bytes, and wait.) Reusing one
                # buffer spares the allocator a large block per read, most of it given back at once.
                data: bytes = self._fp.read1(size)
                self._buffer = memoryview(bytearray(_READ_SIZE))
            else:
                data = self._buffer[: self._fp.readinto1(self._buffer[:size])].tobytes()
        if self._call is not None and self._call.aborted:
            raise self._call.error()
        if not data:
            if self._dechunker is not None or left is not None:
                raise StreamError("the stream broke off: the connection closed before the end of the answer",
                                  status_code=self._status)
            self.complete = True  # a body without framing ends when the connection closes
            return b""
        if self._dechunker is not None:
            piece = self._dechunker.feed(data)
            if self._dechunker.done:
                self._done()
            return piece
        if left is not None:
            self._left = left - len(data)
            if self._left == 0:
                self._done()
        return data

    def _done(self) -> None:
        """The body was read to its end: hand the connection back to the pool."""
        self.complete = True
        if self._timeout_to_restore is not None:  # before another call may take the connection
            sock, timeout = self._timeout_to_restore
            sock.settimeout(timeout)
        self._fp_owner.close()  # PRIVATE (2/2, continued): as urllib3 does at the end of a body
        self._response.raw.release_conn()

    def finish(self) -> None:
        """After the last event: wait briefly for the end of the body, to keep the connection.

        A server that sends its last event and then keeps the connection open without ending
        the body costs at most `_FINISH_GRACE_S`; the connection is then closed instead.
        """
        sock = getattr(self._response.raw.connection, "sock", None)
        if self.complete or self._fp is None or sock is None:
            return
        timeout = sock.gettimeout()
        self._timeout_to_restore = (sock, timeout)
        try:
            sock.settimeout(_FINISH_GRACE_S if timeout is None else min(timeout, _FINISH_GRACE_S))
            while not self.complete:
                if self._read():
                    break  # more than the end of the body: not a connection to reuse
        except LlamaCppError:
            pass
        finally:
            if not self.complete:
                self._response.close()

    def _library_pieces(self) -> Iterator[bytes]:
        raw = self._response.raw
        if raw.chunked and raw.supports_chunked_reads():
            reads: Iterator[bytes] = raw.read_chunked(decode_content=False)
        else:
            reads = iter(lambda: raw.read1(_READ_SIZE, decode_content=False), b"")
        while True:
            with _mapped(self._call, streaming=True, status_code=self._status):
                piece = next(reads, None)
            if piece is None:
                self.complete = True
                return
            if piece:
                yield piece


def _decoded_pieces(response: requests.Response, body: _Body, limit: Optional[int]) -> Iterator[bytes]:
    """Yield the body's bytes with `Content-Encoding` undone, at most `limit` decoded bytes."""
    status = response.status_code
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    pieces = body.pieces()
    if encoding in ("", "identity"):
        yield from pieces
        return
    if encoding not in _ENCODINGS:
        raise StreamError(f"the answer has a content encoding this client did not ask for: {encoding!r}",
                          status_code=status)
    decoder = Decompressor(encoding, limit=limit)
    for piece in pieces:
        out = decoder.feed(piece)
        while out:
            yield out
            out = decoder.more()


def _read_body(response: requests.Response, call: Optional[Call], limit: int, *, truncate: bool) -> bytes:
    """Read a whole body of at most `limit` decoded bytes.

    With `truncate`, return the first `limit` bytes and stop reading (error pages); else raise
    `StreamError` for a longer body, at once when its `Content-Length` says so.
    """
    status = response.status_code
    declared = response.headers.get("Content-Length", "")
    if not truncate and declared.isdigit() and int(declared) > limit and "Content-Encoding" not in response.headers:
        raise StreamError(f"the answer has {declared} bytes, more than the limit of {limit}", status_code=status)
    data = bytearray()
    for piece in _decoded_pieces(response, _Body(response, call), None if truncate else limit):
        data += piece
        if len(data) > limit:
            if truncate:
                del data[limit:]
                break
            raise StreamError(f"the answer is longer than the limit of {limit} bytes", status_code=status)
    return bytes(data)


# -- the transport ----------------------------------------------------------------------------


class Transport:
    """One server's HTTP session: send requests, read answers within limits, map every error.

    Args:
        base_url: The server's URL without credentials (see `split_credentials`).
        api_key: Sent as `Authorization: Bearer`; wins over URL credentials and `headers`.
        basic: `(user, password)` from the URL, sent as HTTP Basic when there is no key.
        headers: Extra headers for every request (not sent to another host after a redirect).
        retry: The retry policy (a urllib3 `Retry`).
        pool_maxsize: Connections kept open to the server.
        verify: TLS verification: True, False, or a CA bundle path (wins over the environment).
        limits: Size limits for what is read.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Optional[str],
        basic: Optional[tuple[str, str]],
        headers: Mapping[str, str],
        retry: Retry,
        pool_maxsize: int,
        verify: bool | str,
        limits: Limits,
    ) -> None:
        self.base_url = base_url
        self.limits = limits
        session = _Session(frozenset(headers))
        # The environment is read once, here: requests would read it (proxies, CA bundle) on every
        # request, about a fifth of the CPU a request costs. ~/.netrc is never read (see _Auth).
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(base_url))  # NO_PROXY honoured
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.auth = _Auth(api_key, basic)
        session.headers["Accept-Encoding"] = "gzip, deflate"  # what Decompressor decodes
        session.headers.update(headers)
        adapter = _Adapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._verify = verify

    def close(self) -> None:
        """Close the pooled connections (they are opened again when needed)."""
        self._session.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Optional[bytes],
        query: Optional[Mapping[str, str]],
        timeout: TimeoutValue,
        call: Optional[Call],
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"} if body is not None else None
        outer = getattr(_local, "call", None)
        _local.call = call
        try:
            with _mapped(call):
                # `verify` per request wins over $REQUESTS_CA_BUNDLE (psf/requests#3829).
                return self._session.request(method, self.base_url + path, data=body, params=query,
                                             headers=headers, timeout=timeout, stream=True, verify=self._verify)
        finally:
            _local.call = outer

    def _check_status(self, response: requests.Response, call: Optional[Call]) -> None:
        if response.status_code >= 400:
            body = _read_body(response, call, self.limits.error_body, truncate=True)
            raise error_from_response(response.status_code, body.decode(response.encoding or "utf-8", "replace"))

    def request_json(
        self,
        method: str,
        path: str,
        *,
        body: Optional[bytes] = None,
        query: Optional[Mapping[str, str]] = None,
        timeout: TimeoutValue,
        call: Optional[Call] = None,
        limit: Optional[int] = None,
    ) -> Any:
        """Send a request and return its decoded JSON answer (at most `limit` bytes).

        Raises:
            APIError: For an error status (the most specific subclass).
            TransportError: When the exchange failed.
            StreamError: When a 2xx answer is not JSON or is longer than the limit.
        """
        data = self._read(method, path, body=body, query=query, timeout=timeout, call=call or Call(), limit=limit)
        return decode_json(data, f"the answer of {method} {path}")

    def request_text(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, str]] = None,
        timeout: TimeoutValue,
        call: Optional[Call] = None,
        limit: Optional[int] = None,
    ) -> str:
        """Send a request and return its answer as text (at most `limit` bytes).

        Raises:
            APIError, TransportError: As `request_json`.
            StreamError: When the answer is longer than the limit or not UTF-8.
        """
        data = self._read(method, path, body=None, query=query, timeout=timeout, call=call or Call(), limit=limit)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StreamError(f"the answer of {method} {path} is not UTF-8: {exc}") from None

    def _read(self, method: str, path: str, *, body: Optional[bytes], query: Optional[Mapping[str, str]],
              timeout: TimeoutValue, call: Optional[Call], limit: Optional[int]) -> bytes:
        clock = call.start() if call is not None else False  # a deadline counts from sending
        try:
            response = self._send(method, path, body=body, query=query, timeout=timeout, call=call)
            try:
                self._check_status(response, call)
                return _read_body(response, call, limit or self.limits.json_body, truncate=False)
            finally:
                response.close()
        finally:
            if call is not None:
                call.finish(stop_clock=clock)

    def stream(
        self,
        path: str,
        body: bytes,
        *,
        timeout: TimeoutValue,
        call: Optional[Call] = None,
        last: Callable[[Any], bool] | None = None,
    ) -> Iterator[Any]:
        """POST `body` and yield the decoded payloads of the event stream that answers.

        The request is sent when iteration starts; the response is closed when iteration ends,
        fails or is stopped (llama-server then cancels the generation).

        Args:
            path: The endpoint.
            body: The JSON body, encoded.
            timeout: The timeout of this call.
            call: Its cancellation handle.
            last: Tells the final payload of a stream without `[DONE]` (see `iter_payloads`).

        Raises:
            APIError: For an error status before the stream began (e.g. context overflow).
            TransportError: When the connection could not be made or timed out.
            StreamError: For a body that is not an event stream, or a broken one.
        """
        clock = call.start() if call is not None else False  # a deadline counts from sending
        try:
            response = self._send("POST", path, body=body, query=None, timeout=timeout, call=call)
        except BaseException:
            if call is not None:
                call.finish(stop_clock=clock)
            raise
        try:
            self._check_status(response, call)
            status = response.status_code
            content_type = response.headers.get("Content-Type", "")
            if not content_type.startswith("text/event-stream"):
                start = _read_body(response, call, self.limits.error_body, truncate=True)
                raise StreamError(
                    f"expected an event stream, got {status} {content_type or 'no content type'}",
                    payload=start.decode("utf-8", "replace"),
                    status_code=status,
                )
            reader = _Body(response, call)
            pieces = _decoded_pieces(response, reader, self.limits.compressed_stream)
            yield from iter_payloads(pieces, event_limit=self.limits.event, last=last, status_code=status)
            reader.finish()
        finally:
            response.close()
            if call is not None:
                call.finish(stop_clock=clock)


def probe_status(url: str, *, timeout: float) -> Optional[int]:
    """Return the HTTP status of a GET to `url`, or None when there is no answer (for `LlamaServer`).

    Never through a proxy from the environment: it checks a server this process started locally.
    """
    with requests.Session() as session:
        session.trust_env = False
        try:
            with session.get(url, timeout=timeout, stream=True) as response:
                return response.status_code
        except requests.RequestException:
            return None
