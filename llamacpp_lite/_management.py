"""Server management: health, properties, models (router mode), slots, LoRA adapters and metrics.

Which model a call is about: POST requests carry it in the body's `model` field and GET requests
as `?model=` (the configured `model_id` unless the call names another; `props()` only when it is
given one). A llama-server router (`--models-dir` / `--models-preset`) routes by it; a single-model
server ignores it. Load and unload are the router's own endpoints (`/models/load`, `/models/unload`),
waited for by polling `GET /models`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Optional

from ._client import BaseClient
from ._config import check_seconds
from ._errors import (
    BadRequestError,
    InvalidRequestError,
    ModelLoadError,
    ModelThrottledException,
    NotSupportedError,
    ReadTimeout,
    ServerError,
    TransportError,
)
from ._json import encode_body
from ._result import ServerProps
from ._server_info import (
    LoraAdapter,
    ModelInfo,
    SlotEraseResult,
    SlotInfo,
    SlotRestoreResult,
    SlotSaveResult,
    check_filename,
    check_model_id,
    check_slot_id,
    find_model,
    lora_request,
    parse_lora_adapters,
    parse_metrics,
    parse_models,
    parse_slot_erase,
    parse_slot_restore,
    parse_slot_save,
    parse_slots,
)
from ._transport import Call

__all__ = ["DEFAULT_MODEL_TIMEOUT", "ManagementMixin"]

logger = logging.getLogger("llamacpp_lite")

DEFAULT_MODEL_TIMEOUT = 300.0
"""Seconds `load_model` and `unload_model` wait by default (big models take minutes to load)."""

_POLL_FIRST_S = 0.05  # the first pause between two looks at a model's status ...
_POLL_MAX_S = 0.5  # ... growing by half each time up to this


def _is_router_entry(model: ModelInfo) -> bool:
    """True for an entry of a router's list (a single-model server sends no `status`)."""
    return "status" in model.raw


class _Deadline:
    """The time left of one `load_model` / `unload_model`, and the pauses between its polls."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expires = time.monotonic() + timeout
        self._pause = _POLL_FIRST_S

    def left(self) -> float:
        return self.expires - time.monotonic()

    def pause(self) -> bool:
        """Sleep before the next poll; False (without sleeping) when that would pass the deadline."""
        if self.left() <= self._pause:
            return False
        time.sleep(self._pause)
        self._pause = min(self._pause * 1.5, _POLL_MAX_S)
        return True


class ManagementMixin(BaseClient):
    """The server-management job of `LlamaCppModel`."""

    # -- health and properties -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return `/health` (`{"status": "ok"}` when ready).

        A router answers for itself: its health says nothing about its models (see `models()`).

        Raises:
            ModelThrottledException: While the model is still loading (503).
            TransportError: When the server cannot be reached.
        """
        return self._object(self._get("/health", call=self._call(retry_status=False)), "/health")

    def props(self, model_id: Optional[str] = None) -> ServerProps:
        """Return the server's properties (context size, modalities, slots, build), typed.

        Args:
            model_id: On a router, the model whose properties to return (the router loads it
                if needed). None: the server's own `/props`; a router's own has no model
                (`is_router` true, `n_ctx` None).

        Raises:
            UnknownModelError: When a router has no such model.
        """
        query = {"model": check_model_id(model_id)} if model_id is not None else None
        answer = self._routed(lambda: self._get("/props", query=query), model_id)
        return ServerProps.from_json(self._object(answer, "/props"))

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
            check_seconds(name, value)
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

    # -- models (router mode) ----------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """Return the models the server offers, with their status.

        A router lists every model of its `--models-dir` / `--models-preset`; a single-model
        server lists the one model it runs (status `loaded`).
        """
        return self._models()

    def load_model(self, model_id: str, *, wait: bool = True, timeout: float = DEFAULT_MODEL_TIMEOUT) -> ModelInfo:
        """Ask a router to load a model, and by default wait until it is loaded.

        A router at its `--models-max` limit first unloads its least recently used idle model;
        when every loaded model is busy it answers 500 "model limit reached, try again later":
        that is taken as transient and the load is asked again until `timeout`. A model that is
        loaded already is left as it is; on a single-model server, its one model is.

        Chat does not need this: a router loads the model a request names and holds the
        request until it is ready. Use it to load ahead of time, or to learn load failures.

        Args:
            model_id: The model's id or alias (see `models()`).
            wait: Wait until the model is loaded (else return once the router started loading).
            timeout: Seconds the whole call may take, polls included.

        Returns:
            The model as `models()` shows it at the end.

        Raises:
            InvalidRequestError: For an empty id or a bad timeout.
            UnknownModelError: When the server has no such model.
            ModelLoadError: When the model's process exited while loading.
            TimeoutException: (`ReadTimeout`) when it was not loaded within `timeout` s.
        """
        model_id = check_model_id(model_id)
        deadline = _Deadline(check_seconds("timeout", timeout))
        model = self._model_named(model_id, deadline)
        if not _is_router_entry(model) or model.status == "loaded":
            return model
        if model.status != "loading":
            model = self._ask_router("/models/load", model, ("loading", "loaded"), deadline)
        if not wait:
            return model
        return self._await_status(model.id, "loaded", deadline, verb="loaded")

    def unload_model(self, model_id: str, *, wait: bool = True,
                     timeout: float = DEFAULT_MODEL_TIMEOUT) -> ModelInfo:
        """Ask a router to unload a model, and by default wait until it is unloaded.

        A model that is busy is stopped after the router's stop timeout (10 s): its requests in
        flight then fail (500 "proxy error: Failed to read connection").

        Args:
            model_id: The model's id or alias.
            wait: Wait until it is unloaded (else return once the router accepted).
            timeout: Seconds the whole call may take, polls included.

        Returns:
            The model as `models()` shows it at the end (`unloaded`, or `failed` when its process
            had to be killed).

        Raises:
            InvalidRequestError: For an empty id or a bad timeout.
            UnknownModelError: When the server has no such model.
            NotSupportedError: On a single-model server (it cannot unload its model).
            TimeoutException: (`ReadTimeout`) when it was not unloaded within `timeout` s.
        """
        model_id = check_model_id(model_id)
        deadline = _Deadline(check_seconds("timeout", timeout))
        model = self._model_named(model_id, deadline)
        if _is_router_entry(model) and model.status in ("unloaded", "failed"):
            return model
        model = self._ask_router("/models/unload", model, ("unloaded", "failed"), deadline)
        if not wait:
            return model
        return self._await_status(model.id, "unloaded", deadline, verb="unloaded")

    def _models(self, deadline: Optional[_Deadline] = None) -> list[ModelInfo]:
        if deadline is None:
            return parse_models(self._get("/models"))
        left = max(deadline.left(), 0.001)
        return parse_models(self._get("/models", timeout=(left, left), call=Call(deadline=left)))

    def _model_named(self, model_id: str, deadline: _Deadline) -> ModelInfo:
        models = self._models(deadline)
        model = find_model(models, model_id)
        if model is None:
            raise self._unknown_model(model_id, [m.id for m in models])
        return model

    def _ask_router(self, path: str, model: ModelInfo, accepted: tuple[str, ...], deadline: _Deadline) -> ModelInfo:
        """POST a load or unload; retry a 500 (limit reached) until the deadline; return the new state."""
        while True:
            left = max(deadline.left(), 0.001)
            try:
                self._transport.request_json("POST", path, body=encode_body({"model": model.id}),
                                             timeout=(left, left), call=Call(deadline=left))
                return self._model_named(model.id, deadline)
            except NotSupportedError as exc:
                if not _is_router_entry(model):
                    raise NotSupportedError(
                        f"this llama-server runs one model and cannot load or unload models (start it in "
                        f"router mode: --models-dir or --models-preset); server said: {exc.message}",
                        status_code=exc.status_code, error_type=exc.error_type, body=exc.body) from exc
                raise
            except BadRequestError:  # "already running" / "not running": the state changed meanwhile
                model = self._model_named(model.id, deadline)
                if model.status in accepted:
                    return model
                raise
            except ServerError as exc:  # "model limit reached, try again later" while others are busy
                logger.debug("%s %s: %s; asking again", path, model.id, exc)
                if not deadline.pause():
                    raise ReadTimeout(f"model {model.id!r} could not be {path.rsplit('/', 1)[1]}ed within "
                                      f"{deadline.timeout:g} s: {exc}") from exc

    def _await_status(self, model_id: str, wanted: str, deadline: _Deadline, *, verb: str) -> ModelInfo:
        while True:
            model = self._model_named(model_id, deadline)
            if model.status == wanted or (wanted == "unloaded" and model.status == "failed"):
                return model
            if wanted == "loaded" and model.status in ("failed", "unloaded"):
                exit_code = model.raw.get("status", {}).get("exit_code")
                raise ModelLoadError(
                    f"model {model_id!r} failed to load (its process exited with code {exit_code}; "
                    f"the router's log says why)",
                    model_id=model_id, exit_code=exit_code if type(exit_code) is int else None,
                    status_code=500, error_type="server_error", body=model.raw)
            if not deadline.pause():
                raise ReadTimeout(f"model {model_id!r} was not {verb} within {deadline.timeout:g} s "
                                  f"(status: {model.status})")

    # -- slots -------------------------------------------------------------------------------

    def slots(self, model_id: Optional[str] = None) -> list[SlotInfo]:
        """Return each slot's state and the effective params of its last task.

        Args:
            model_id: On a router, whose slots (default: the configured `model_id`).

        Raises:
            NotSupportedError: When the server runs with `--no-slots`.
        """
        model = self._model_or_configured(model_id)
        return parse_slots(self._routed(lambda: self._get("/slots", query={"model": model}), model))

    def save_slot(self, slot_id: int, filename: str, *, model_id: Optional[str] = None) -> SlotSaveResult:
        """Save a slot's prompt cache to `filename` in the server's `--slot-save-path`.

        Args:
            slot_id: The slot (0 to `total_slots - 1`; checked, since the server would wrap it).
            filename: A plain file name (no path); the server's rules are checked before sending.
            model_id: On a router, whose slot (default: the configured `model_id`).

        Raises:
            InvalidRequestError: For a bad slot id or file name.
            NotSupportedError: When the server runs without `--slot-save-path` (501).
        """
        return parse_slot_save(self._slot_action(slot_id, "save", model_id, {"filename": check_filename(filename)}))

    def restore_slot(self, slot_id: int, filename: str, *, model_id: Optional[str] = None) -> SlotRestoreResult:
        """Load a saved prompt cache into a slot: a prompt that starts with it is then a cache hit.

        Args:
            slot_id: The slot to fill (any slot of the same model, not only the one saved).
            filename: A file written by `save_slot`.
            model_id: On a router, whose slot (default: the configured `model_id`).

        Raises:
            InvalidRequestError: For a bad slot id or file name.
            BadRequestError: When there is no such file (or it does not fit the slot).
            NotSupportedError: When the server runs without `--slot-save-path` (501).
        """
        return parse_slot_restore(
            self._slot_action(slot_id, "restore", model_id, {"filename": check_filename(filename)}))

    def erase_slot(self, slot_id: int, *, model_id: Optional[str] = None) -> SlotEraseResult:
        """Drop a slot's prompt cache.

        Raises:
            InvalidRequestError: For a bad slot id.
            NotSupportedError: When the server runs without `--slot-save-path` (llama-server asks
                for it for erasing too).
        """
        return parse_slot_erase(self._slot_action(slot_id, "erase", model_id, {}))

    def _slot_action(self, slot_id: int, action: str, model_id: Optional[str], body: dict[str, Any]) -> Any:
        """Check the slot id against the server's slot count, then POST the action (busy slots wait)."""
        model = self._model_or_configured(model_id)
        check_slot_id(slot_id, None)  # the type, before any request
        check_slot_id(slot_id, self.props(model).total_slots)
        return self._routed(lambda: self._post(f"/slots/{slot_id}", {**body, "model": model},
                                               query={"action": action}), model)

    # -- LoRA adapters -----------------------------------------------------------------------

    def lora_adapters(self, *, model_id: Optional[str] = None) -> list[LoraAdapter]:
        """Return the LoRA adapters the server loaded (`--lora`) and their global scales.

        Args:
            model_id: On a router, whose adapters (default: the configured `model_id`).
        """
        model = self._model_or_configured(model_id)
        return parse_lora_adapters(self._routed(lambda: self._get("/lora-adapters", query={"model": model}), model))

    def set_lora_adapters(self, scales: Mapping[int, float], *,
                          model_id: Optional[str] = None) -> list[LoraAdapter]:
        """Set the global scale of some adapters (0 turns one off); the others keep theirs.

        llama-server sets every adapter that a `POST /lora-adapters` does not list to 0, so the
        adapters are read first and the whole list is sent. Two clients setting scales at the
        same moment can therefore undo each other's change. Requests with their own `lora`
        field are not affected.

        Args:
            scales: `{adapter_id: scale}`.
            model_id: Accepted for symmetry; a router cannot route this call (see Raises).

        Returns:
            The adapters with their new scales.

        Raises:
            InvalidRequestError: For an id the server has no adapter for (it would silently
                ignore it) or a scale that is not a finite number.
            NotSupportedError: Through a router: `POST /lora-adapters` has no `model` field to
                route by. Send `lora` with each request there, or set `lora-scaled` in the preset.
        """
        wanted = {item["id"]: item["scale"] for item in lora_request(scales)}
        current = self.lora_adapters(model_id=model_id)
        known = {adapter.id for adapter in current}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise InvalidRequestError(f"no LoRA adapter with id {unknown[0]}: the server has "
                                      f"{sorted(known) or 'none'} (llama-server would ignore it silently)")
        body = [{"id": adapter.id, "scale": wanted.get(adapter.id, adapter.scale)} for adapter in current]
        try:
            self._post("/lora-adapters", body)
        except BadRequestError as exc:
            if self.props().is_router:
                raise NotSupportedError(
                    "a llama-server router cannot set LoRA scales (POST /lora-adapters carries no model to "
                    "route by): send `lora` with each request, or set lora-scaled in the model's preset; "
                    f"server said: {exc.message}",
                    status_code=exc.status_code, error_type=exc.error_type, body=exc.body) from exc
            raise
        return [LoraAdapter(id=adapter.id, path=adapter.path, scale=float(wanted.get(adapter.id, adapter.scale)),
                            raw={**adapter.raw, "scale": wanted.get(adapter.id, adapter.scale)})
                for adapter in current]

    # -- metrics -----------------------------------------------------------------------------

    def metrics(self, *, model_id: Optional[str] = None) -> dict[str, float]:
        """Return `/metrics` parsed: `{"llamacpp:prompt_tokens_total": 56.0, ...}`.

        Counters are printed by the server with six significant digits (`1.23457e+06`), and the
        throughput gauges are averages since the previous scrape (each scrape resets them).

        Args:
            model_id: On a router, whose metrics (default: the configured `model_id`).

        Raises:
            NotSupportedError: When the server (on a router: the model's process) runs without `--metrics`.
        """
        model = self._model_or_configured(model_id)
        text = self._routed(lambda: self._transport.request_text("GET", "/metrics", query={"model": model},
                                                                 timeout=self._timeout), model)
        return parse_metrics(text)

    # -- helpers -------------------------------------------------------------------------------

    def _model_or_configured(self, model_id: Optional[str]) -> str:
        return check_model_id(model_id) if model_id is not None else self._config.model_id

    def _routed(self, send: Callable[[], Any], model_id: Optional[str]) -> Any:
        """Run `send`; a 400 about an unknown model becomes `UnknownModelError`."""
        try:
            return send()
        except BadRequestError as exc:
            if model_id is None:
                raise
            raise self._explain_bad_request(exc, model_id) from exc

