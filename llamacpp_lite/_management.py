"""Server management: health, properties and slots of the server `LlamaCppModel` talks to."""

from __future__ import annotations

import math
import time
from typing import Any

from ._client import BaseClient
from ._errors import InvalidRequestError, ModelThrottledException, ReadTimeout, TransportError
from ._result import ServerProps
from ._transport import Call

__all__ = ["ManagementMixin"]


class ManagementMixin(BaseClient):
    """The server-management job of `LlamaCppModel`: `health`, `props`, `slots`, `wait_until_ready`."""

    def health(self) -> dict[str, Any]:
        """Return `/health` (`{"status": "ok"}` when ready).

        Raises:
            ModelThrottledException: While the model is still loading (503).
            TransportError: When the server cannot be reached.
        """
        return self._object(self._get("/health", call=self._call(retry_status=False)), "/health")

    def props(self) -> ServerProps:
        """Return the server's properties (context size, modalities, slots, build), typed."""
        return ServerProps.from_json(self._object(self._get("/props"), "/props"))

    def slots(self) -> list:
        """Return `/slots`: each slot's state and the effective params of its last task."""
        answer = self._get("/slots")
        if not isinstance(answer, list):
            raise self._shape_error("/slots", "a list", answer)
        return answer

    def wait_until_ready(self, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Poll `/health` until the server answers 200, for at most `timeout` seconds in total.

        Each poll is bounded by the time left, so a server that accepts connections and never
        answers cannot hold the call past `timeout`.

        Raises:
            InvalidRequestError: For a timeout or interval that is not a positive finite number.
            TimeoutException: (`ReadTimeout`) when the server is not ready within `timeout` s;
                the message carries the last error seen.
        """
        for name, value in (("timeout", timeout), ("interval", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise InvalidRequestError(f"{name} must be a positive finite number of seconds, got {value!r}")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                self._get("/health", timeout=(left, left), call=Call(deadline=left, retry_status=False))
                return
            except (ModelThrottledException, TransportError) as exc:
                if time.monotonic() + interval >= deadline:
                    raise ReadTimeout(f"the server was not ready within {timeout} s: {exc}") from exc
            time.sleep(interval)
