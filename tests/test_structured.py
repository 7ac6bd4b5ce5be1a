"""Structured output: schemas for dataclasses, pydantic models and schema dicts; validation errors."""

from __future__ import annotations

import dataclasses
import enum
from typing import List, Literal, Optional

import pytest

import llamacpp_lite as lite
from llamacpp_lite._structured import output_spec, parse_output


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


@dataclasses.dataclass
class Part:
    label: str


@dataclasses.dataclass
class Order:
    item: str = dataclasses.field(metadata={"json_schema": {"maxLength": 8}})
    size: Size
    count: int
    mode: Literal["fast", "slow"]
    parts: List[Part]
    note: Optional[str] = None


def test_dataclass_schema_is_derived_from_hints_and_field_metadata():
    schema = output_spec(Order).schema
    assert schema["required"] == ["item", "size", "count", "mode", "parts"]
    props = schema["properties"]
    assert props["item"] == {"type": "string", "maxLength": 8}
    assert props["size"] == {"enum": ["small", "large"]}
    assert props["mode"] == {"enum": ["fast", "slow"]}
    assert props["parts"] == {"type": "array", "items": {"type": "object", "properties": {"label": {"type": "string"}},
                                                          "required": ["label"], "additionalProperties": False}}
    assert props["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}


def test_valid_output_builds_the_dataclass():
    spec = output_spec(Order)
    order = parse_output(spec, '{"item": "tea", "size": "large", "count": 2, "mode": "fast", "parts": [{"label": "a"}]}',
                         "end_turn")
    assert order == Order(item="tea", size=Size.LARGE, count=2, mode="fast", parts=[Part("a")])


def test_invalid_output_raises_with_raw_text_and_errors():
    spec = output_spec(Order)
    raw = '{"item": "far too long", "size": "huge", "count": 2, "mode": "fast", "parts": []}'
    with pytest.raises(lite.StructuredOutputError) as info:
        parse_output(spec, raw, "end_turn")
    assert info.value.raw_text == raw
    assert any(e.startswith("item:") for e in info.value.errors) and any(e.startswith("size:") for e in info.value.errors)


def test_truncated_output_says_max_tokens():
    with pytest.raises(lite.StructuredOutputError, match="cut off by max_tokens") as info:
        parse_output(output_spec(Order), '{"ite', "max_tokens")
    assert info.value.stop_reason == "max_tokens"


def test_schema_dict_returns_the_validated_dict():
    spec = output_spec({"type": "object", "properties": {"x": {"type": "integer"}}})
    assert parse_output(spec, '{"x": 3}', "end_turn") == {"x": 3}
    with pytest.raises(lite.InvalidRequestError, match="not a valid JSON Schema"):
        output_spec({"type": 12})


def test_pydantic_models_use_their_own_schema_and_validation():
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=5)

    spec = output_spec(Item)
    assert spec.schema["properties"]["name"]["maxLength"] == 5
    assert parse_output(spec, '{"name": "abc"}', "end_turn") == Item(name="abc")


def test_other_output_models_are_refused():
    with pytest.raises(lite.InvalidRequestError):
        output_spec(int)
