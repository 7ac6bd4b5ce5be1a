"""Pure raw completion and fill-in-the-middle: requests for `/completion` and `/infill`, answers parsed.

No I/O and no chat template: the prompt is sent as given. Parameters are the chat's, with the
same translations (`normalize_params`), plus what this endpoint names differently:
`max_tokens`/`max_completion_tokens` become `n_predict` (in each layer, so a per-call
`max_tokens` wins over a configured `n_predict`), and chat's `logprobs=True, top_logprobs=N`
becomes `n_probs=N`.

Both endpoints answer in llama.cpp's own shape (`content`, `stop_type`, `tokens_predicted`, ...);
streams send one object per token and a last one with `"stop": true`, and no `[DONE]`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

from ._errors import InvalidRequestError, StreamError, preview
from ._tokens import TokenProbability, check_token_ids, parse_probabilities

__all__ = [
    "Completion",
    "CompletionChunk",
    "STOP_TYPES",
    "build_completion_request",
    "build_infill_request",
    "generation_params",
    "is_final",
    "parse_completion",
    "translate_stream",
]

Prompt = Union[str, Sequence[int]]

STOP_TYPES: Mapping[str, str] = {
    "eos": "end_turn",
    "word": "stop_sequence",
    "limit": "max_tokens",
    "none": "end_turn",
}
"""llama.cpp `stop_type` -> the stop reason of chat (`eos` is an end-of-generation token)."""

_N_PREDICT_ALIASES = ("max_completion_tokens", "max_tokens")  # the server reads n_predict first, then these
_RESERVED = frozenset({"prompt", "stream", "input_prefix", "input_suffix", "input_extra"})


@dataclasses.dataclass(frozen=True)
class Completion:
    """The answer of `complete` or `infill` (or the last chunk's `final` of a stream).

    Attributes:
        text: The generated text.
        stop_reason: `end_turn` (an end-of-generation token), `max_tokens` (the token limit,
            `t_max_predict_ms`, or a full context) or `stop_sequence` (one of `stop`).
        prompt_tokens: Tokens of the prompt, as the server counted them (cached ones included).
        completion_tokens: Tokens generated (an end-of-generation token included).
        timings: The server's `timings` (`predicted_per_second`, `prompt_ms`, ...).
        probabilities: Per generated token, with `n_probs` (or `logprobs`); else None.
        stopping_word: The stop string that ended the text, when `stop_reason` is `stop_sequence`.
        truncated: True when the prompt had to be cut to fit the context.
    """

    text: str
    stop_reason: str
    prompt_tokens: int
    completion_tokens: int
    timings: Mapping[str, Any]
    probabilities: Optional[tuple[TokenProbability, ...]] = None
    stopping_word: Optional[str] = None
    truncated: bool = False


@dataclasses.dataclass(frozen=True)
class CompletionChunk:
    """One piece of a streamed completion.

    Attributes:
        text: The text of this piece (may be empty: a token whose text is held back, e.g. the
            start of a possible stop string, or an end-of-generation token).
        probabilities: This piece's token probabilities, with `n_probs`; else empty.
        final: On the last chunk only: the whole answer, its text being the streamed pieces joined.
    """

    text: str
    probabilities: tuple[TokenProbability, ...] = ()
    final: Optional[Completion] = None


def _one_layer(params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with the token limit under the name llama.cpp reads first (`n_predict`)."""
    layer = dict(params)
    for alias in _N_PREDICT_ALIASES:
        if alias in layer:
            value = layer.pop(alias)
            layer.setdefault("n_predict", value)
    return layer


def generation_params(configured: Mapping[str, Any], call: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the configured params and this call's (both normalized) for `/completion`.

    The token limit is renamed to `n_predict` in each layer first, so the call's wins whatever
    name either layer used; chat's `logprobs=True` (with `top_logprobs`) becomes `n_probs`.

    Raises:
        InvalidRequestError: For `top_logprobs` without `logprobs=True`, a non-boolean,
            non-integer `logprobs`, or `response_format` (this endpoint ignores it).
    """
    params = {**_one_layer(configured), **_one_layer(call)}
    if "response_format" in params:
        raise InvalidRequestError("response_format is not read by /completion or /infill: pass json_schema= "
                                  "(a JSON Schema) or grammar= instead")
    logprobs = params.pop("logprobs", None)
    top = params.pop("top_logprobs", None)
    if logprobs is True:
        params.setdefault("n_probs", 20 if top is None else top)
    elif type(logprobs) is int:
        params.setdefault("n_probs", logprobs)  # llama.cpp's own alias of n_probs
    elif logprobs not in (None, False):
        raise InvalidRequestError(f"logprobs must be True, False or a count, got {logprobs!r:.40}")
    if top is not None and logprobs is not True:
        raise InvalidRequestError("top_logprobs requires logprobs=True (or pass n_probs=N)")
    return params


def _check_params(params: Mapping[str, Any]) -> None:
    reserved = _RESERVED.intersection(params)
    if reserved:
        raise InvalidRequestError(f"{sorted(reserved)} cannot be set through params; use the call's arguments")
    if params.get("n", 1) != 1 or params.get("n_cmpl", 1) != 1:
        raise InvalidRequestError("n must be 1: one prompt gives one completion")
    if "grammar" in params and "json_schema" in params:
        raise InvalidRequestError("grammar and json_schema cannot be used together")


def _prompt(prompt: Any) -> Union[str, list[int]]:
    if isinstance(prompt, str):
        if not prompt:
            raise InvalidRequestError("prompt is empty: the server would generate nothing")
        return prompt
    if isinstance(prompt, (list, tuple)):
        return check_token_ids(prompt, "prompt", allow_empty=False)
    raise InvalidRequestError(f"prompt must be a string or a list of token ids, got {type(prompt).__name__}")


def build_completion_request(prompt: Any, *, model_id: str, params: Mapping[str, Any],
                             stream: bool) -> dict[str, Any]:
    """Build the body of a `/completion` request: the raw prompt, no chat template.

    Args:
        prompt: A non-empty string, or a non-empty list of token ids.
        model_id: The `model` field (a router picks the model by it).
        params: The request fields, from `generation_params`.
        stream: Ask for a stream.

    Raises:
        InvalidRequestError: For another prompt, reserved fields, `n` other than 1, or both
            `grammar` and `json_schema`.
    """
    checked = _prompt(prompt)
    _check_params(params)
    return {"model": model_id, **params, "prompt": checked, "stream": stream}


def _extra_files(extra: Any) -> list[dict[str, str]]:
    if isinstance(extra, (str, Mapping)) or not isinstance(extra, Sequence):
        raise InvalidRequestError("input_extra must be a list of {'filename': str, 'text': str} mappings")
    files = []
    for index, item in enumerate(extra):
        if not isinstance(item, Mapping) or not isinstance(item.get("text"), str) \
                or not isinstance(item.get("filename", ""), str) or set(item) - {"filename", "text"}:
            raise InvalidRequestError(f"input_extra[{index}] must be {{'filename': str, 'text': str}} "
                                      f"(filename optional), got {item!r:.80}")
        files.append(dict(item))
    return files


def build_infill_request(prefix: Any, suffix: Any, *, prompt: Any, input_extra: Any, model_id: str,
                         params: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """Build the body of an `/infill` request (fill in the middle between `prefix` and `suffix`).

    Args:
        prefix: The text before the gap (may be empty).
        suffix: The text after the gap (may be empty).
        prompt: Text placed after the prefix, where the generation starts, or None.
        input_extra: Other files for context, `[{"filename": ..., "text": ...}]`, or None.
        model_id: The `model` field.
        params: The request fields, from `generation_params`.
        stream: Ask for a stream.

    Raises:
        InvalidRequestError: For a prefix, suffix or prompt that is not a string, malformed
            extra files, or params as `build_completion_request` refuses them.
    """
    for name, value in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(value, str):
            raise InvalidRequestError(f"{name} must be a string, got {type(value).__name__}")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidRequestError(f"prompt must be a string or None, got {type(prompt).__name__}")
    _check_params(params)
    body: dict[str, Any] = {"model": model_id, **params, "input_prefix": prefix, "input_suffix": suffix}
    if prompt:
        body["prompt"] = prompt
    if input_extra is not None:
        body["input_extra"] = _extra_files(input_extra)
    body["stream"] = stream
    return body


def _get(answer: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = answer.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise StreamError(f"{where} answered without a {kind.__name__} {name!r}", payload=preview(answer))
    return value


def _final(answer: Any, where: str, text: str,
           probabilities: Optional[tuple[TokenProbability, ...]]) -> Completion:
    timings = answer.get("timings", {})
    stopping_word = answer.get("stopping_word") or None
    if not isinstance(timings, dict) or not isinstance(stopping_word, (str, type(None))):
        raise StreamError(f"{where} answered with malformed timings or stopping_word", payload=preview(answer))
    stop_type = _get(answer, "stop_type", str, where)
    return Completion(
        text=text,
        stop_reason=STOP_TYPES.get(stop_type, "end_turn"),
        prompt_tokens=_get(answer, "tokens_evaluated", int, where),
        completion_tokens=_get(answer, "tokens_predicted", int, where),
        timings=timings,
        probabilities=probabilities,
        stopping_word=stopping_word if stop_type == "word" else None,
        truncated=answer.get("truncated") is True,
    )


def parse_completion(answer: Any, where: str) -> Completion:
    """Parse the answer of a non-streamed `/completion` or `/infill` request.

    Raises:
        StreamError: For an answer that is not one result object with `content`, `stop_type`,
            `tokens_evaluated` and `tokens_predicted`.
    """
    if not isinstance(answer, dict):
        raise StreamError(f"{where} answered with something other than one result object", payload=preview(answer))
    entries = answer.get("completion_probabilities")
    probabilities = parse_probabilities(entries, where) if entries is not None else None
    return _final(answer, where, _get(answer, "content", str, where), probabilities)


def is_final(payload: Any) -> bool:
    """Whether a stream payload is the last one (llama.cpp's native streams have no `[DONE]`)."""
    return isinstance(payload, dict) and payload.get("stop") is True


def translate_stream(payloads: Iterable[Any], where: str) -> Iterator[CompletionChunk]:
    """Translate the decoded payloads of a `/completion` or `/infill` stream into chunks.

    Progress events (`return_progress`) are skipped. The last chunk carries `final`.

    Raises:
        StreamError: For a payload of the wrong shape, or a stream without its last object.
    """
    pieces: list[str] = []
    probabilities: list[TokenProbability] = []
    asked_probabilities = False
    for payload in payloads:
        if not isinstance(payload, dict):
            raise StreamError(f"{where} streamed something other than a result object", payload=preview(payload))
        if "prompt_progress" in payload and payload.get("stop") is not True:
            continue
        text = _get(payload, "content", str, where)
        entries = payload.get("completion_probabilities")
        own = parse_probabilities(entries, where) if entries is not None else ()
        asked_probabilities = asked_probabilities or entries is not None
        pieces.append(text)
        probabilities.extend(own)
        if payload.get("stop") is True:
            final = _final(payload, where, "".join(pieces), tuple(probabilities) if asked_probabilities else None)
            yield CompletionChunk(text=text, probabilities=own, final=final)
            return
        yield CompletionChunk(text=text, probabilities=own)
    raise StreamError(f"the {where} stream ended before its final object")
