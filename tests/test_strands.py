"""AsyncLlamaCppModel inside a real Strands Agent, against a real llama-server."""

from __future__ import annotations

import pydantic
import pytest
import responses

pytest.importorskip("strands", reason="the strands extra is not installed")

from strands import Agent, tool  # noqa: E402
from strands.types.exceptions import ContextWindowOverflowException, ModelThrottledException  # noqa: E402

import llamacpp_lite as lite  # noqa: E402
from llamacpp_lite import AsyncLlamaCppModel  # noqa: E402
from tests.helpers import MOCK_URL  # noqa: E402

pytestmark = pytest.mark.real_server

calls = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    calls.append((a, b))
    return a + b


def test_agent_calls_the_tool_then_answers(real_server):
    calls.clear()
    agent = Agent(model=AsyncLlamaCppModel(real_server.base_url, params={"max_tokens": 200}), tools=[add],
                  callback_handler=None)
    result = agent("What is 2 + 3?")
    assert len(calls) == 1 and all(isinstance(v, int) for v in calls[0])
    assert result.stop_reason == "end_turn"
    roles = [m["role"] for m in agent.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert any("toolUse" in block for block in agent.messages[1]["content"])
    assert any("toolResult" in block for block in agent.messages[2]["content"])
    assert any(block.get("text") for block in agent.messages[3]["content"])
    assert result.metrics.accumulated_usage["inputTokens"] > 0


class Verdict(pydantic.BaseModel):
    """A verdict."""

    ok: bool
    score: int = pydantic.Field(ge=0, le=9)


def test_agent_structured_output_model(real_server):
    agent = Agent(model=AsyncLlamaCppModel(real_server.base_url, params={"max_tokens": 200}), callback_handler=None)
    result = agent("Judge this.", structured_output_model=Verdict)
    assert isinstance(result.structured_output, Verdict)
    assert 0 <= result.structured_output.score <= 9


def test_context_overflow_is_strands_exception(small_ctx_server):
    model = AsyncLlamaCppModel(small_ctx_server.base_url)
    agent = Agent(model=model, callback_handler=None)
    agent.messages.extend([{"role": "user", "content": [{"text": "word " * 200}]},
                           {"role": "assistant", "content": [{"text": "ok"}]}] * 3)
    # The Agent catches the overflow, trims its history and retries; it must not crash.
    result = agent("Now answer briefly.")
    assert result.stop_reason in ("end_turn", "max_tokens")
    assert len(agent.messages) < 8


def test_overflow_raised_from_the_model_is_both_classes(small_ctx_server):
    import asyncio

    model = AsyncLlamaCppModel(small_ctx_server.base_url)

    async def run():
        return [e async for e in model.stream("word " * 400)]

    with pytest.raises(ContextWindowOverflowException) as info:
        asyncio.run(run())
    assert isinstance(info.value, lite.ContextWindowOverflowException) and info.value.n_ctx == 256


def test_throttling_is_strands_exception():
    import asyncio

    model = AsyncLlamaCppModel(MOCK_URL, retry=None)
    with responses.RequestsMock() as mock:
        mock.add("POST", MOCK_URL + "/v1/chat/completions", status=503,
                 json={"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})

        async def run():
            return [e async for e in model.stream("hi")]

        with pytest.raises(ModelThrottledException) as info:
            asyncio.run(run())
    assert isinstance(info.value, lite.ModelThrottledException) and "Loading model" in str(info.value)
