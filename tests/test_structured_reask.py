"""Structured output that asks again: `structured_output(..., max_attempts=N)`, the errors Strands' own
provider documents (`json.JSONDecodeError`, `pydantic.ValidationError`), sync, async and through a
Strands Agent. The fault server plays the answers where a test needs a given one; the real server's
tiny model gets rules its grammar cannot enforce, so its answers really fail validation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import warnings

import pydantic
import pytest

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel
from tests import fault_server as fs


@dataclasses.dataclass
class Span:
    """Two bounds that the grammar keeps in 0..9; only __post_init__ knows that start < end."""

    start: int = dataclasses.field(metadata={"json_schema": {"minimum": 0, "maximum": 9}})
    end: int = dataclasses.field(metadata={"json_schema": {"minimum": 0, "maximum": 9}})

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be less than end ({self.end})")


class Word(pydantic.BaseModel):
    """A palindrome of 3+ letters, 7 apart: rules a JSON Schema grammar cannot state."""

    word: str = pydantic.Field(max_length=8)
    low: int = pydantic.Field(ge=0, le=9)
    high: int = pydantic.Field(ge=0, le=9)

    @pydantic.model_validator(mode="after")
    def rules(self) -> "Word":
        if len(self.word) < 3 or self.word != self.word[::-1]:
            raise ValueError(f"word must be a palindrome of 3 or more letters, got {self.word!r}")
        if self.high - self.low != 7:
            raise ValueError("high must be low + 7")
        return self


def answer(text: str, finish: str = "stop", tokens: int = 7) -> fs.Handler:
    chunks = fs.text_chunks(text, finish=finish)
    chunks[-1]["usage"] = {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": 20 + tokens}
    return fs.sse_stream(*chunks)


@pytest.fixture
def model(server):
    with LlamaCppModel(server.url, timeout=(2, 5), retry=None) as model:
        yield model


def messages_sent(server, index):
    return server.requests[index].json()["messages"]


# -- the re-ask loop (fault injection) ---------------------------------------------------------


def test_an_invalid_answer_is_sent_back_with_its_errors_and_asked_again(server, model):
    server.script(answer('{"start": 5, "end": 2}'), answer('{"start": 2, "end": 5}'))
    events = list(model.structured_output(Span, "A span, please.", max_attempts=3))
    assert events[-1] == {"output": Span(2, 5)}
    assert [e for e in events if "messageStart" in e] == [{"messageStart": {"role": "assistant"}}] * 2
    assert len(server.requests) == 2
    second = messages_sent(server, 1)
    assert second[0] == {"role": "user", "content": "A span, please."}
    assert second[1] == {"role": "assistant", "content": '{"start": 5, "end": 2}'}
    assert second[2]["role"] == "user" and "start (5) must be less than end (2)" in second[2]["content"]
    assert server.requests[1].json()["json_schema"] == server.requests[0].json()["json_schema"]


def test_every_attempt_is_kept_on_the_final_error(server, model):
    texts = ['{"start": 5, "end": 2}', '{"start": 9, "end": 9}', '{"start": 4, "end": 1}']
    server.script(*[answer(text) for text in texts], answer('{"start": 1, "end": 2}'))
    with pytest.raises(lite.StructuredOutputError) as info:
        list(model.structured_output(Span, "A span.", max_attempts=3))
    assert info.value.attempts == tuple(texts) and info.value.raw_text == texts[-1]
    assert "start (4) must be less than end (1)" in str(info.value) and len(server.requests) == 3
    assert isinstance(info.value.__cause__, ValueError)


def test_one_attempt_by_default_as_before(server, model):
    server.script(answer('{"start": 5, "end": 2}'), answer('{"start": 1, "end": 2}'))
    with pytest.raises(lite.StructuredOutputError) as info:
        list(model.structured_output(Span, "A span."))
    assert info.value.attempts == ('{"start": 5, "end": 2}',) and len(server.requests) == 1


def test_the_models_default_number_of_attempts(server):
    server.script(answer('{"start": 5, "end": 2}'), answer('{"start": 1, "end": 2}'))
    with LlamaCppModel(server.url, retry=None, structured_output_attempts=2) as model:
        assert list(model.structured_output(Span, "A span."))[-1] == {"output": Span(1, 2)}
        with pytest.raises(lite.InvalidRequestError, match="max_attempts"):
            model.structured_output(Span, "A span.", max_attempts=0)
    with pytest.raises(lite.InvalidRequestError, match="structured_output_attempts"):
        LlamaCppModel(server.url, structured_output_attempts=0)


def test_a_max_tokens_cut_is_not_argued_with(server, model):
    server.script(answer('{"start": 1, "en', finish="length", tokens=9), answer('{"start": 1, "end": 2}'))
    with pytest.raises(lite.StructuredOutputError) as info:
        list(model.structured_output(Span, "A span.", max_attempts=3, max_tokens=9))
    assert len(server.requests) == 1 and info.value.stop_reason == "max_tokens"
    assert "cut off by max_tokens after 9 tokens" in str(info.value) and "e.g. to 18" in str(info.value)
    assert isinstance(info.value, json.JSONDecodeError)


def test_the_deadline_covers_every_attempt(server, model):
    server.script(*[fs.delayed(0.4, answer('{"start": 5, "end": 2}')) for _ in range(5)])
    with pytest.raises(lite.DeadlineExceeded):
        list(model.structured_output(Span, "A span.", max_attempts=5, deadline=1.0))
    assert 2 <= len(server.requests) <= 3


def test_abort_stops_whichever_attempt_is_running(server, model):
    server.script(answer('{"start": 5, "end": 2}'), fs.sse_stream(*fs.text_chunks("{"), done=False, end="stall"))
    events = model.structured_output(Span, "A span.", max_attempts=3)
    seen = []
    with pytest.raises(lite.Aborted):
        for event in events:
            seen.append(event)
            if len([e for e in seen if "messageStart" in e]) == 2 and "contentBlockDelta" in event:
                events.abort()
    assert server.disconnected.wait(2)


def test_async_twin_asks_again_too(server):
    server.script(answer('{"start": 5, "end": 2}'), answer('{"start": 0, "end": 9}'))
    model = AsyncLlamaCppModel(server.url, retry=None)

    async def run():
        return [event async for event in model.structured_output(Span, "A span.", max_attempts=2)]

    assert asyncio.run(run())[-1] == {"output": Span(0, 9)}
    model.close()


# -- the errors code written for Strands' provider catches ------------------------------------


def test_not_json_is_a_json_decode_error_with_doc_and_pos(server, model):
    server.script(answer("not json at all"))
    schema = {"type": "object"}
    try:
        list(model.structured_output(schema, "JSON please"))
    except json.JSONDecodeError as error:  # how code written for Strands' LlamaCppModel catches it
        assert (error.doc, error.pos, error.lineno, error.colno) == ("not json at all", 0, 1, 1)
        assert error.msg == "Expecting value" and isinstance(error, lite.StructuredOutputError)
        assert isinstance(error, ValueError) and error.raw_text == "not json at all"
    else:
        pytest.fail("no JSONDecodeError")


def test_a_failed_pydantic_validation_is_a_pydantic_validation_error(server, model):
    server.script(answer('{"word": "abc", "low": 1, "high": 8}'))
    try:
        list(model.structured_output(Word, "A word."))
    except pydantic.ValidationError as error:  # how code written for Strands' LlamaCppModel catches it
        assert isinstance(error, lite.StructuredOutputError) and isinstance(error, ValueError)
        assert error.error_count() == 1 and error.title == "Word"
        assert error.errors()[0]["type"] == "value_error" and "palindrome" in error.errors()[0]["msg"]
        assert error.errors == ["(root): Value error, word must be a palindrome of 3 or more letters, got 'abc'"]
        assert "palindrome" in str(error) and isinstance(error.__cause__, pydantic.ValidationError)
    else:
        pytest.fail("no pydantic.ValidationError")


def test_a_pydantic_error_that_cannot_be_rebuilt_is_still_the_cause(server, model):
    from pydantic_core import PydanticCustomError

    class Odd(pydantic.BaseModel):
        n: int

        @pydantic.field_validator("n")
        @classmethod
        def odd(cls, value: int) -> int:
            if value % 2 == 0:
                raise PydanticCustomError("not_odd", "{n} is even", {"n": value})
            return value

    server.script(answer('{"n": 4}'))
    with pytest.raises(ValueError) as info:
        list(model.structured_output(Odd, "An odd number."))
    assert isinstance(info.value, lite.StructuredOutputError) and "4 is even" in str(info.value)
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


def test_schema_errors_are_value_errors_too(server, model):
    server.script(answer('{"start": 12, "end": 2}'))
    with pytest.raises(ValueError, match="start: 12 is greater than the maximum of 9"):
        list(model.structured_output(Span, "A span."))


# -- a real llama-server: rules its grammar cannot enforce ------------------------------------


@pytest.mark.real_server
def test_real_server_validation_really_fails_and_every_attempt_is_kept(real_server):
    with LlamaCppModel(real_server.base_url, timeout=(5, 60)) as model:
        with pytest.raises(pydantic.ValidationError) as info:
            list(model.structured_output(Word, "Give a word.", max_attempts=3, temperature=0, max_tokens=120))
    error = info.value
    assert isinstance(error, lite.StructuredOutputError) and len(error.attempts) == 3
    assert all(json.loads(text).keys() == {"word", "low", "high"} for text in error.attempts)  # the grammar held
    assert error.stop_reason == "end_turn"


@pytest.mark.real_server
def test_real_server_async_and_dataclass(real_server):
    model = AsyncLlamaCppModel(real_server.base_url, timeout=(5, 60))

    @dataclasses.dataclass
    class Ordered:
        a: int = dataclasses.field(metadata={"json_schema": {"minimum": 0, "maximum": 9}})
        b: int = dataclasses.field(metadata={"json_schema": {"minimum": 0, "maximum": 9}})
        c: str = dataclasses.field(metadata={"json_schema": {"maxLength": 6}})

        def __post_init__(self) -> None:
            if self.c != "sorted" or not self.a < self.b:
                raise ValueError("c must say 'sorted' and a < b")

    async def run():
        return [e async for e in model.structured_output(Ordered, "Two numbers.", max_attempts=2, temperature=0,
                                                         max_tokens=120)]

    with pytest.raises(lite.StructuredOutputError) as info:
        asyncio.run(run())
    assert len(info.value.attempts) == 2 and "c must say 'sorted'" in str(info.value)
    model.close()


@pytest.mark.real_server
def test_real_server_through_a_strands_agents_structured_output(real_server):
    strands = pytest.importorskip("strands")
    model = AsyncLlamaCppModel(real_server.base_url, timeout=(5, 60), structured_output_attempts=2,
                               params={"temperature": 0, "max_tokens": 120})
    agent = strands.Agent(model=model, callback_handler=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Agent.structured_output is deprecated in Strands
        with pytest.raises(pydantic.ValidationError) as info:
            agent.structured_output(Word, "Give a word.")
    assert isinstance(info.value, lite.StructuredOutputError) and len(info.value.attempts) == 2
