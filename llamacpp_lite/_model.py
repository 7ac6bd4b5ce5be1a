"""`LlamaCppModel`: the synchronous client of one llama-server, made of one mixin per job."""

from __future__ import annotations

from ._chat import AGENT_KWARGS, ChatMixin, EventStream
from ._client import API_KEY_ENV, BASE_URL_ENV, DEFAULT_POOL_MAXSIZE, DEFAULT_TIMEOUT
from ._inference import InferenceMixin
from ._management import ManagementMixin
from ._retrieval import RetrievalMixin
from ._transport import DEFAULT_RETRY

__all__ = [
    "AGENT_KWARGS",
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_POOL_MAXSIZE",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "EventStream",
    "LlamaCppModel",
]

_DEFAULT_CONTEXT_WINDOW = 200_000  # Strands' DEFAULT_CONTEXT_WINDOW_LIMIT


class LlamaCppModel(ChatMixin, InferenceMixin, RetrievalMixin, ManagementMixin):
    """A synchronous client for one llama-server, shaped like the Strands `LlamaCppModel`.

    Thread-safe: one object may be shared by many threads; each call builds its own request
    from the configuration it finds and never changes it.

    Example:
        >>> model = LlamaCppModel("http://127.0.0.1:8080", params={"max_tokens": 64})
        >>> model.get_config()["params"]
        {'max_tokens': 64}
        >>> model.close()

    Args:
        base_url: The server's URL, with any path prefix of a proxy or `--api-prefix`; default
            `$LLAMACPP_BASE_URL`, else `http://localhost:8080`. `user:pass@` in it is sent as
            HTTP Basic authentication (unless `api_key` is given) and never shown.
        timeout: `(connect, read)` seconds, seconds for both, or None for none; default
            `(10, None)`: 10 s to connect, no read timeout. The read timeout is the longest gap
            allowed between two bytes, not a deadline for the whole answer; a busy server
            queues a request without sending a byte.
        api_key: Sent as `Authorization: Bearer`; defaults to `$LLAMACPP_API_KEY`. Surrounding
            whitespace is stripped. It wins over `user:pass@` in the URL and an `Authorization`
            in `headers`; `~/.netrc` is never read.
        model_id: The `model` field sent (a single-model llama-server ignores it).
        params: Request fields sent at the top level of every request (see README).
        headers: Extra HTTP headers for every request (not sent on after a redirect to another host).
        context_window_limit: Tokens the Agent may use; default: the server's context size.
        retry: A urllib3 `Retry`, an int (connect/503 attempts), or None for no retries.
        pool_maxsize: Connections kept open to the server (one per concurrent stream).
        verify: TLS verification: True, False, or the path of a CA bundle.
        limits: The most that is read of each answer (`Limits`; see README "Failure behaviour").
        batch_limit: The most tokens one input of `embed` may have: the server's physical batch
            size, `-ub` (default 512, llama-server's default). No endpoint reports it; it names
            the input in `InputTooLongError` and is where `embed(truncate=True)` cuts.
        deadline: Seconds every call may take in all, from sending its request to its last
            event (retries and a queue on the server included), or None for no bound; a call
            past it is closed (llama-server cancels the work) and raises `DeadlineExceeded`.
            Methods taking `deadline=` override it per call.
        structured_output_attempts: How many times `structured_output` asks at most when the
            answer does not validate (see `structured_output`); default 1.
    """

    def estimate_utilization(self, input_tokens: int) -> float:
        """Return the fraction of the context window that `input_tokens` would use (Strands API).

        Uses `context_window_limit`, or Strands' default of 200,000 when it is unknown.
        """
        return input_tokens / (self.context_window_limit or _DEFAULT_CONTEXT_WINDOW)

    def __enter__(self) -> "LlamaCppModel":
        return self
