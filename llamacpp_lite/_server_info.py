"""Pure translation for the many-models endpoints: models, slots, LoRA adapters and metrics.

Request builders check arguments before anything is sent (`InvalidRequestError`); result parsers
turn the server's JSON (or Prometheus text) into frozen dataclasses. Parsers tolerate fields they
do not know and are strict about the ones they promise: a wrong shape is a `StreamError`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Optional

from ._errors import InvalidRequestError, StreamError, preview

__all__ = [
    "LoraAdapter",
    "MODEL_STATUSES",
    "ModelInfo",
    "SlotEraseResult",
    "SlotInfo",
    "SlotRestoreResult",
    "SlotSaveResult",
    "check_filename",
    "check_model_id",
    "check_slot_id",
    "find_model",
    "lora_request",
    "parse_lora_adapters",
    "parse_metrics",
    "parse_models",
    "parse_slot_erase",
    "parse_slot_restore",
    "parse_slot_save",
    "parse_slots",
]

MODEL_STATUSES = ("loaded", "loading", "unloaded", "failed")
"""The values of `ModelInfo.status`."""

# The router's `status.value` (server-models.h) -> ours. A sleeping model answers requests (it
# wakes on the first one); a model being downloaded is on its way to being loaded.
_STATUS = {
    "loaded": "loaded",
    "sleeping": "loaded",
    "loading": "loading",
    "downloading": "loading",
    "unloaded": "unloaded",
    "downloaded": "unloaded",
}


def _int(value: Any) -> Optional[int]:
    return value if type(value) is int else None


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _shape(path: str, expected: str, answer: Any) -> StreamError:
    return StreamError(f"{path} answered with something other than {expected}", payload=preview(answer))


def _require(entry: Any, name: str, kind: type, path: str) -> Any:
    value = entry.get(name) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise StreamError(f"{path} answered without a {kind.__name__} {name!r}", payload=preview(entry))
    return value


# -- models ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One model a server offers (`GET /models`).

    Attributes:
        id: The model id to pass as `model_id` (a router's name for it; on a single-model server
            the model's alias or path).
        status: `loaded`, `loading`, `unloaded` or `failed` (its last load failed). A router's
            `sleeping` model counts as `loaded` (it wakes on the next request) and `downloading`
            as `loading`. A single-model server's one model is always `loaded`.
        aliases: Other names the router accepts for it.
        n_ctx: The context size of one slot, when the model runs (the router only knows it then).
        raw: The whole entry, as the server sent it.
    """

    id: str
    status: str
    aliases: tuple[str, ...]
    n_ctx: Optional[int]
    raw: Mapping[str, Any]

    def named(self, model_id: str) -> bool:
        """True when `model_id` is this model's id or one of its aliases."""
        return model_id == self.id or model_id in self.aliases


def _model_info(entry: Any) -> ModelInfo:
    model_id = _require(entry, "id", str, "/models")
    status = entry.get("status")
    if status is None:
        value = "loaded"  # a single-model server lists the model it runs, without a status
    elif isinstance(status, dict) and isinstance(status.get("value"), str):
        server_value: str = status["value"]
        value = "failed" if status.get("failed") is True else _STATUS.get(server_value, server_value)
    else:
        raise StreamError("/models answered with a model whose status has no value", payload=preview(entry))
    aliases = entry.get("aliases")
    meta = entry.get("meta")
    n_ctx = _int(meta.get("n_ctx")) if isinstance(meta, dict) else None
    return ModelInfo(
        id=model_id,
        status=value,
        aliases=tuple(alias for alias in aliases if isinstance(alias, str)) if isinstance(aliases, list) else (),
        n_ctx=n_ctx if n_ctx else None,
        raw=entry,
    )


def parse_models(answer: Any) -> list[ModelInfo]:
    """Return the models of a `GET /models` answer (`{"data": [...]}`).

    Raises:
        StreamError: When the answer or an entry has the wrong shape.
    """
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise _shape("/models", "an object with a 'data' list", answer)
    return [_model_info(entry) for entry in data]


def find_model(models: list[ModelInfo], model_id: str) -> Optional[ModelInfo]:
    """Return the model named `model_id` (its id first, then an alias), or None."""
    for model in models:
        if model.id == model_id:
            return model
    return next((model for model in models if model.named(model_id)), None)


def check_model_id(model_id: Any, name: str = "model_id") -> str:
    """Return `model_id`, checked to be a non-empty string.

    Raises:
        InvalidRequestError: Otherwise.
    """
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidRequestError(f"{name} must be a non-empty string, got {model_id!r}")
    return model_id


# -- slots ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SlotInfo:
    """One slot of `GET /slots`.

    Attributes:
        id: The slot id (pass it as `id_slot` to pin a conversation to the slot).
        n_ctx: The slot's context size.
        is_processing: True while it runs a task.
        params: The effective sampling params of its last task (empty before the first).
        raw: The whole entry.
    """

    id: int
    n_ctx: Optional[int]
    is_processing: bool
    params: Mapping[str, Any]
    raw: Mapping[str, Any]


def parse_slots(answer: Any) -> list[SlotInfo]:
    """Return the slots of a `GET /slots` answer.

    Raises:
        StreamError: When the answer is not a list of slot objects.
    """
    if not isinstance(answer, list):
        raise _shape("/slots", "a list", answer)
    slots = []
    for entry in answer:
        slot_id = _require(entry, "id", int, "/slots")
        processing = entry.get("is_processing")
        if not isinstance(processing, bool):
            raise StreamError("/slots answered without a bool 'is_processing'", payload=preview(entry))
        params = entry.get("params")
        slots.append(SlotInfo(id=slot_id, n_ctx=_int(entry.get("n_ctx")), is_processing=processing,
                              params=params if isinstance(params, dict) else {}, raw=entry))
    return slots


@dataclasses.dataclass(frozen=True)
class SlotSaveResult:
    """What `POST /slots/{id}?action=save` did.

    Attributes:
        id_slot: The slot saved.
        filename: The file written, in the server's `--slot-save-path`.
        n_saved: Tokens saved.
        n_written: Bytes written.
        save_ms: Milliseconds it took.
        raw: The whole answer.
    """

    id_slot: int
    filename: str
    n_saved: int
    n_written: int
    save_ms: Optional[float]
    raw: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SlotRestoreResult:
    """What `POST /slots/{id}?action=restore` did.

    Attributes:
        id_slot: The slot restored into.
        filename: The file read.
        n_restored: Tokens restored (a prompt starting with them is now a cache hit in this slot).
        n_read: Bytes read.
        restore_ms: Milliseconds it took.
        raw: The whole answer.
    """

    id_slot: int
    filename: str
    n_restored: int
    n_read: int
    restore_ms: Optional[float]
    raw: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SlotEraseResult:
    """What `POST /slots/{id}?action=erase` did.

    Attributes:
        id_slot: The slot erased.
        n_erased: Tokens dropped from its cache.
        raw: The whole answer.
    """

    id_slot: int
    n_erased: int
    raw: Mapping[str, Any]


def _timing(answer: Mapping[str, Any], name: str) -> Optional[float]:
    timings = answer.get("timings")
    return _number(timings.get(name)) if isinstance(timings, dict) else None


def _fields(answer: Any, action: str, **kinds: type) -> dict[str, Any]:
    """The fields `kinds` names, each checked to be of its kind."""
    return {name: _require(answer, name, kind, f"/slots?action={action}") for name, kind in kinds.items()}


def parse_slot_save(answer: Any) -> SlotSaveResult:
    """Parse the answer of a slot save.

    Raises:
        StreamError: For a wrong shape.
    """
    fields = _fields(answer, "save", id_slot=int, filename=str, n_saved=int, n_written=int)
    return SlotSaveResult(**fields, save_ms=_timing(answer, "save_ms"), raw=answer)


def parse_slot_restore(answer: Any) -> SlotRestoreResult:
    """Parse the answer of a slot restore.

    Raises:
        StreamError: For a wrong shape.
    """
    fields = _fields(answer, "restore", id_slot=int, filename=str, n_restored=int, n_read=int)
    return SlotRestoreResult(**fields, restore_ms=_timing(answer, "restore_ms"), raw=answer)


def parse_slot_erase(answer: Any) -> SlotEraseResult:
    """Parse the answer of a slot erase.

    Raises:
        StreamError: For a wrong shape.
    """
    return SlotEraseResult(**_fields(answer, "erase", id_slot=int, n_erased=int), raw=answer)


def check_slot_id(slot_id: Any, total_slots: Optional[int]) -> int:
    """Return `slot_id`, checked to name one of `total_slots` slots.

    llama-server takes every integer and wraps it (`id % n_slots`, negatives included), so a
    wrong id would act on another slot: it is refused here instead.

    Raises:
        InvalidRequestError: For a non-int, a negative id, or one past the last slot.
    """
    if type(slot_id) is not int or slot_id < 0:
        raise InvalidRequestError(f"slot_id must be an int >= 0, got {slot_id!r}")
    if total_slots is not None and slot_id >= total_slots:
        raise InvalidRequestError(f"slot_id {slot_id} does not exist: the server has {total_slots} slot(s), "
                                  f"ids 0 to {total_slots - 1}")
    return slot_id


_BAD_FILENAME_CHARS = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')


def check_filename(filename: Any) -> str:
    """Return `filename`, checked against llama-server's rules for slot files.

    The server refuses (400 "Invalid filename") path separators, `..`, the characters
    `:*?"<>|`, control characters, empty names, names over 255 bytes, leading or trailing
    spaces and a trailing dot. The file lives in the server's `--slot-save-path`.

    Raises:
        InvalidRequestError: For a name the server would refuse.
    """
    if not isinstance(filename, str):
        raise InvalidRequestError(f"filename must be a string, got {type(filename).__name__}")
    reason = None
    if not filename:
        reason = "it is empty"
    elif len(filename.encode("utf-8", "surrogatepass")) > 255:
        reason = "it is longer than 255 bytes"
    elif _BAD_FILENAME_CHARS.search(filename):
        reason = 'it contains a path separator, one of :*?"<>| or a control character'
    elif ".." in filename:
        reason = "it contains '..'"
    elif filename != filename.strip(" ") or filename.endswith("."):
        reason = "it starts or ends with a space, or ends with a dot"
    if reason:
        raise InvalidRequestError(f"filename {filename!r} cannot be a slot file: {reason} "
                                  f"(a plain name inside the server's --slot-save-path)")
    return filename


# -- LoRA adapters ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoraAdapter:
    """One LoRA adapter the server loaded (`--lora`), with its global scale.

    Attributes:
        id: Its id: the position in the server's `--lora` list.
        path: The adapter file.
        scale: The scale requests without a `lora` field use (0 = off).
        raw: The whole entry (`task_name`, `prompt_prefix`, aLoRA fields ...).
    """

    id: int
    path: str
    scale: float
    raw: Mapping[str, Any]


def parse_lora_adapters(answer: Any) -> list[LoraAdapter]:
    """Return the adapters of a `GET /lora-adapters` answer.

    Raises:
        StreamError: For a wrong shape.
    """
    if not isinstance(answer, list):
        raise _shape("/lora-adapters", "a list", answer)
    adapters = []
    for entry in answer:
        scale = _number(entry.get("scale")) if isinstance(entry, dict) else None
        if scale is None:
            raise StreamError("/lora-adapters answered without a number 'scale'", payload=preview(entry))
        adapters.append(LoraAdapter(id=_require(entry, "id", int, "/lora-adapters"),
                                    path=_require(entry, "path", str, "/lora-adapters"), scale=scale, raw=entry))
    return adapters


def _adapter_id(value: Any) -> int:
    if type(value) is str and value.isdigit():  # JSON object keys (e.g. from the command line)
        value = int(value)
    if type(value) is not int or value < 0:
        raise InvalidRequestError(f"a LoRA adapter id must be an int >= 0, got {value!r}")
    return value


def _scale(adapter_id: int, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"the scale of LoRA adapter {adapter_id} must be a finite number, got {value!r}")
    return float(value)


def lora_request(value: Any) -> list[dict[str, Any]]:
    """Return the `lora` request field for `{id: scale}` or the server's `[{"id", "scale"}]` list.

    llama-server does not check this field: a bad scale silently becomes 0 and an unknown id is
    ignored, so both are checked here.

    Raises:
        InvalidRequestError: For another shape, an id that is not an int >= 0, a scale that is
            not a finite number, or an id given twice.
    """
    if isinstance(value, Mapping):
        pairs = [(_adapter_id(key), scale) for key, scale in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = []
        for entry in value:
            if not isinstance(entry, Mapping) or set(entry) != {"id", "scale"}:
                raise InvalidRequestError(f"each entry of lora must be {{'id': int, 'scale': number}}, got {entry!r}")
            pairs.append((_adapter_id(entry["id"]), entry["scale"]))
    else:
        raise InvalidRequestError(f"lora must be {{id: scale}} or [{{'id': id, 'scale': scale}}], "
                                  f"got {type(value).__name__}")
    request: list[dict[str, Any]] = []
    for adapter_id, scale in pairs:
        if any(item["id"] == adapter_id for item in request):
            raise InvalidRequestError(f"LoRA adapter {adapter_id} is given twice")
        request.append({"id": adapter_id, "scale": _scale(adapter_id, scale)})
    return request


# -- metrics -------------------------------------------------------------------------------

# `name{labels} value [timestamp]`; label values may hold spaces, escaped quotes and braces.
_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?)\s+(\S+)(?:\s+-?\d+)?\s*$')


def parse_metrics(text: str) -> dict[str, float]:
    """Parse Prometheus text exposition (`GET /metrics`) into `{series: value}`.

    Series keep their full names, labels included as written (`llamacpp:prompt_tokens_total`,
    `llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"}`). `# HELP`/`# TYPE`
    and blank lines are skipped. Values may be in C++ stream notation (`1.23457e+06`: six
    significant digits, so big counters are rounded by the server), `NaN` or `+Inf`.

    Raises:
        StreamError: For a line that is neither a comment nor a sample.
    """
    metrics: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        value = None
        if match:
            raw = match.group(2)
            try:
                value = float(raw.replace("_", "#"))  # float() also reads NaN, +Inf, -Inf; not 1_000
            except ValueError:
                value = None
        if match is None or value is None:
            raise StreamError("/metrics answered with a line that is not a Prometheus sample", payload=preview(line))
        metrics[match.group(1)] = value
    return metrics
