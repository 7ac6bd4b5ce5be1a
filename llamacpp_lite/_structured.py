"""Structured output: a JSON Schema for the requested type, and checking the model's answer.

Three kinds of output model are accepted:

* a dataclass: its schema is derived from the type hints (bounds can be added per field with
  `field(metadata={"json_schema": {"maxLength": 20}})`), the instance is built with
  dataclasses-json;
* a pydantic model class (when pydantic is installed; not a dependency): its own schema and
  validation (a failure is also a `pydantic.ValidationError`, see `StructuredOutputError`);
* a JSON Schema dict: the validated dict is returned.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from typing import Any, Callable, Mapping, Optional, Sequence

# jsonschema and dataclasses_json are imported where they are used: together they would add
# about a third to `import llamacpp_lite`, and most programs never ask for structured output.

from ._errors import (
    InvalidRequestError,
    StructuredOutputError,
    StructuredOutputJSONError,
    structured_output_validation_error,
)

__all__ = ["OutputSpec", "check_attempts", "output_spec", "parse_output", "reask_message"]

_ERRORS_SHOWN = 10  # validation errors named in a message or a re-ask, at most

_SCALARS: Mapping[Any, Mapping[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
}


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """How to ask for and check one kind of structured output.

    Attributes:
        schema: The JSON Schema sent as `json_schema`.
        build: Turns the validated JSON value into the object returned to the caller.
        check_schema: Validate against `schema` with jsonschema before `build` (pydantic models
            validate themselves, and their error is the one their users expect).
    """

    schema: Mapping[str, Any]
    build: Callable[[Any], Any]
    check_schema: bool = True


def _type_schema(hint: Any) -> dict[str, Any]:
    """Return the JSON Schema of a type hint (nested dataclasses are inlined)."""
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        return {"anyOf": [_type_schema(arg) for arg in args]}
    if origin in (list, tuple, set, frozenset, typing.Sequence) or hint in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {"type": "array", "prefixItems": [_type_schema(a) for a in args], "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if origin in (dict, typing.Mapping) or hint is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1]) if args else {}}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_schema(hint)
    raise InvalidRequestError(f"cannot derive a JSON Schema for the type {hint!r}")


def _dataclass_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, globalns=vars(sys.modules.get(cls.__module__, types.ModuleType("m"))))
    properties = {}
    required = []
    for field in dataclasses.fields(cls):
        schema = _type_schema(hints[field.name])
        schema.update(field.metadata.get("json_schema", {}))
        properties[field.name] = schema
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            required.append(field.name)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def output_spec(output_model: Any) -> OutputSpec:
    """Return the schema and builder for a dataclass, a pydantic model class, or a schema dict.

    Raises:
        InvalidRequestError: For anything else, or a type without a JSON Schema.
    """
    import jsonschema

    if isinstance(output_model, Mapping):
        try:
            jsonschema.validators.validator_for(output_model).check_schema(dict(output_model))
        except jsonschema.SchemaError as exc:
            raise InvalidRequestError(f"the output schema is not a valid JSON Schema: {exc.message}") from None
        return OutputSpec(schema=dict(output_model), build=lambda value: value)
    if isinstance(output_model, type) and dataclasses.is_dataclass(output_model):
        # PRIVATE: dataclasses-json's public API decodes only classes it decorated or that subclass its
        # mixin; this is its decoder itself, so the caller's own (undecorated) class is built.
        from dataclasses_json.core import _decode_dataclass

        decode = getattr(output_model, "from_dict", None) or (
            lambda value: _decode_dataclass(output_model, value, False)  # type: ignore[no-untyped-call]
        )
        return OutputSpec(schema=_dataclass_schema(output_model), build=decode)
    if isinstance(output_model, type) and hasattr(output_model, "model_json_schema"):
        pydantic_model: Any = output_model
        return OutputSpec(schema=pydantic_model.model_json_schema(), build=pydantic_model.model_validate,
                          check_schema=False)
    raise InvalidRequestError(
        f"output_model must be a dataclass, a pydantic model class or a JSON Schema dict; got {output_model!r}"
    )


def check_attempts(max_attempts: Any) -> int:
    """Return `max_attempts`, checked to be an int >= 1.

    Raises:
        InvalidRequestError: For anything else.
    """
    if type(max_attempts) is not int or max_attempts < 1:
        raise InvalidRequestError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    return max_attempts


def parse_output(spec: OutputSpec, raw_text: str, stop_reason: str, *, attempts: Sequence[str] = (),
                 output_tokens: Optional[int] = None) -> Any:
    """Parse, validate and build the model's answer.

    Args:
        spec: What was asked for.
        raw_text: The answer's text.
        stop_reason: The answer's stop reason.
        attempts: The text of every answer so far, this one last (kept on the error).
        output_tokens: How many tokens the answer has, for the message when it was cut off.

    Raises:
        StructuredOutputError: With the raw text and the validation errors. Its subclass
            `StructuredOutputJSONError` when the text is not JSON; a pydantic model's failure is
            also a `pydantic.ValidationError`. An answer cut off by `max_tokens` says so, and by
            how much to raise it.
    """
    context: dict[str, Any] = {"raw_text": raw_text, "stop_reason": stop_reason, "attempts": attempts}
    cut_off = ""
    if stop_reason == "max_tokens":
        tokens = f" after {output_tokens} tokens" if output_tokens else ""
        advice = f"e.g. to {2 * output_tokens}" if output_tokens else "e.g. double it"
        cut_off = (f"the answer was cut off by max_tokens{tokens} (raise max_tokens, {advice}; "
                   "asking again would not help): ")
    try:
        value = json.loads(raw_text)
    except json.JSONDecodeError as exc:
        raise StructuredOutputJSONError(f"{cut_off}the output is not JSON: {exc}", json_message=exc.msg, pos=exc.pos,
                                        **context) from None
    except ValueError as exc:  # e.g. too deeply nested
        raise StructuredOutputError(f"{cut_off}the output is not JSON: {exc}", **context) from None
    errors = _validation_errors(spec.schema, value) if spec.check_schema else []
    if errors:
        raise StructuredOutputError(
            f"{cut_off}the output does not match the schema: {'; '.join(errors[:_ERRORS_SHOWN])}",
            errors=errors, **context,
        )
    try:
        return spec.build(value)
    except Exception as exc:  # the builder is user-defined (pydantic validators, dataclass __post_init__)
        details = _pydantic_errors(exc)
        message = f"{cut_off}the output could not be turned into the output model: {exc}"
        if details is None:
            raise StructuredOutputError(message, errors=[str(exc)], **context) from exc
        raise structured_output_validation_error(message, exc, errors=details, **context) from exc


def _pydantic_errors(exc: Exception) -> Optional[list[str]]:
    """Return the messages of a `pydantic.ValidationError` ("loc: msg"), or None for another exception."""
    pydantic_core = sys.modules.get("pydantic_core")
    if pydantic_core is None or not isinstance(exc, pydantic_core.ValidationError):
        return None
    return [f"{'/'.join(map(str, error.get('loc', ()))) or '(root)'}: {error.get('msg')}"
            for error in exc.errors(include_url=False)]


def reask_message(error: StructuredOutputError) -> str:
    """The user message that sends a failed answer's errors back and asks again.

    Args:
        error: Why the last answer failed.

    Returns:
        The text of the message.
    """
    problems = error.errors[:_ERRORS_SHOWN] or [str(error)]
    lines = "\n".join(f"- {problem}" for problem in problems)
    return (f"Your answer is not valid for the required JSON Schema:\n{lines}\n"
            "Answer again with only the corrected JSON.")


def _validation_errors(schema: Mapping[str, Any], value: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    ]

