"""Structured output: a JSON Schema for the requested type, and checking the model's answer.

Three kinds of output model are accepted:

* a dataclass: its schema is derived from the type hints (bounds can be added per field with
  `field(metadata={"json_schema": {"maxLength": 20}})`), the instance is built with
  dataclasses-json;
* a pydantic model class (when pydantic is installed; not a dependency): its own schema and
  validation;
* a JSON Schema dict: the validated dict is returned.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from typing import Any, Callable, Mapping

# jsonschema and dataclasses_json are imported where they are used: together they would add
# about a third to `import llamacpp_lite`, and most programs never ask for structured output.

from ._errors import InvalidRequestError, StructuredOutputError

__all__ = ["OutputSpec", "output_spec", "parse_output"]

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
        schema: The JSON Schema sent as `json_schema` and checked with jsonschema.
        build: Turns the validated JSON value into the object returned to the caller.
    """

    schema: Mapping[str, Any]
    build: Callable[[Any], Any]


def _type_schema(hint: Any) -> dict:
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
    if dataclasses.is_dataclass(hint):
        return _dataclass_schema(hint)
    raise InvalidRequestError(f"cannot derive a JSON Schema for the type {hint!r}")


def _dataclass_schema(cls: type) -> dict:
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
            jsonschema.validators.validator_for(output_model).check_schema(output_model)
        except jsonschema.SchemaError as exc:
            raise InvalidRequestError(f"the output schema is not a valid JSON Schema: {exc.message}") from None
        return OutputSpec(schema=dict(output_model), build=lambda value: value)
    if isinstance(output_model, type) and dataclasses.is_dataclass(output_model):
        from dataclasses_json.core import _decode_dataclass

        decode = getattr(output_model, "from_dict", None) or (lambda value: _decode_dataclass(output_model, value, False))
        return OutputSpec(schema=_dataclass_schema(output_model), build=decode)
    if isinstance(output_model, type) and hasattr(output_model, "model_json_schema"):
        return OutputSpec(schema=output_model.model_json_schema(), build=output_model.model_validate)
    raise InvalidRequestError(
        f"output_model must be a dataclass, a pydantic model class or a JSON Schema dict; got {output_model!r}"
    )


def parse_output(spec: OutputSpec, raw_text: str, stop_reason: str) -> Any:
    """Parse, validate and build the model's answer.

    Raises:
        StructuredOutputError: With the raw text and the validation errors; a stop reason of
            `max_tokens` is named as the likely cause.
    """
    cut_short = " (the output was cut short by max_tokens)" if stop_reason == "max_tokens" else ""
    try:
        value = json.loads(raw_text)
    except ValueError as exc:
        raise StructuredOutputError(
            f"the output is not JSON{cut_short}: {exc}", raw_text=raw_text, stop_reason=stop_reason
        ) from None
    errors = _validation_errors(spec.schema, value)
    if errors:
        raise StructuredOutputError(
            f"the output does not match the schema{cut_short}: {'; '.join(errors[:5])}",
            raw_text=raw_text,
            errors=errors,
            stop_reason=stop_reason,
        )
    try:
        return spec.build(value)
    except Exception as exc:  # the builder is user-defined (pydantic validators, dataclass __post_init__)
        raise StructuredOutputError(
            f"the output could not be turned into the output model: {exc}",
            raw_text=raw_text,
            errors=[str(exc)],
            stop_reason=stop_reason,
        ) from exc


def _validation_errors(schema: Mapping[str, Any], value: Any) -> list:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    ]

