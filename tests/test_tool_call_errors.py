"""llama-server failing to parse the model's tool call: `ToolCallParseError`, with what is known of the output.

The exact shapes come from the pinned server (b11434, `/work/notes/tool-call-parse-errors.md`):
in a stream, a 200 whose chunks carry the call so far, then one `data: {"error":...}` event and
the end of the body (no `[DONE]`); not streamed, a 500. Older builds said "Failed to parse input
at pos N: <the unparsed output>". The fault-injecting server replays those bytes; the
`bad_tool_call` tiny model makes a real llama-server produce them.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel
from llamacpp_lite._errors import error_from_response, tool_call_parse_error
from tests import fault_server as fs
from tests.helpers import ADD_TOOL, WEATHER_TOOL

MESSAGE = "The model produced output that does not match the expected peg-native format"
PARSE_ERROR = {"error": {"code": 500, "message": MESSAGE, "type": "server_error"}}
OLD_REST = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par\u00efs"}}\n</tool_call'
OLD_ERROR = {"error": {"code": 500, "message": f"Failed to parse input at pos 12: {OLD_REST}", "type": "server_error"}}
ROLE = {"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}],
        "object": "chat.completion.chunk"}


def call_chunk(**function):
    call = {"index": 0, "function": function}
    if "name" in function:
        call.update(id="call-7", type="function")
    return {"choices": [{"finish_reason": None, "index": 0, "delta": {"tool_calls": [call]}}],
            "object": "chat.completion.chunk"}


def text_chunk(text):
    return {"choices": [{"finish_reason": None, "index": 0, "delta": {"content": text}}]}


# What b11434 streams before the error: the call's name, then `{"city":"` one piece at a time.
CALL_SO_FAR = [call_chunk(name="get_weather", arguments="{"),
               *[call_chunk(arguments=piece) for piece in ['"', "c", "i", "t", "y", '"', ":", '"']]]


@pytest.fixture
def model(server):
    with LlamaCppModel(server.url, timeout=(2, 5), retry=None) as model:
        yield model


def test_the_in_stream_error_after_a_partial_call_keeps_the_call_so_far(server, model):
    server.script(fs.sse_stream(ROLE, *CALL_SO_FAR, PARSE_ERROR, done=False, end="finish-close"))
    events = []
    with pytest.raises(lite.ToolCallParseError) as info:
        for event in model.stream("weather?", [WEATHER_TOOL]):
            events.append(event)
    error = info.value
    assert isinstance(error, lite.ServerError) and not isinstance(error, lite.StreamError)
    assert (error.status_code, error.error_type, error.message) == (500, "server_error", MESSAGE)
    assert error.tool_calls == ({"id": "call-7", "name": "get_weather", "arguments": '{"city":"'},)
    assert error.text == "" and error.position is None and error.error == PARSE_ERROR["error"]
    assert error.raw_output == '{"name": "get_weather", "arguments": {"city":"'
    # the events before the error were delivered as they came
    assert events[1] == {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "call-7", "name": "get_weather"}}}}
    assert "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events[2:]) == '{"city":"'


def test_text_streamed_before_the_error_is_kept(server, model):
    server.script(fs.sse_stream(ROLE, text_chunk("Let me look"), text_chunk(" that up."), *CALL_SO_FAR[:3],
                                PARSE_ERROR, done=False, end="finish-close"))
    with pytest.raises(lite.ToolCallParseError) as info:
        model.chat("weather?", [WEATHER_TOOL])
    assert info.value.text == "Let me look that up."
    assert info.value.raw_output == 'Let me look that up.\n{"name": "get_weather", "arguments": {"c'


def test_a_500_before_the_stream_is_the_same_error(server, model):
    server.script(fs.respond_json(500, PARSE_ERROR, close=True))
    with pytest.raises(lite.ToolCallParseError) as info:
        model.chat("weather?", [WEATHER_TOOL])
    assert info.value.status_code == 500 and info.value.raw_output == "" and info.value.tool_calls == ()
    assert info.value.body == PARSE_ERROR


@pytest.mark.parametrize("where", ["in the stream", "as a 500"])
def test_older_servers_message_carries_the_unparsed_output(server, model, where):
    if where == "in the stream":
        server.script(fs.sse_stream(ROLE, text_chunk("ok"), OLD_ERROR, done=False, end="finish-close"))
    else:
        server.script(fs.respond_json(500, OLD_ERROR, close=True))
    with pytest.raises(lite.ToolCallParseError) as info:
        model.chat("weather?", [WEATHER_TOOL])
    assert info.value.raw_output == OLD_REST and info.value.position == 12


def test_other_server_errors_keep_their_classes(server, model):
    grammar = {"error": {"code": 500, "message": "got exception: Unexpected empty grammar stack", "type": "server_error"}}
    server.script(fs.sse_stream(ROLE, text_chunk("a"), grammar, done=False, end="finish-close"),
                  fs.respond_json(500, grammar, close=True))
    with pytest.raises(lite.StreamError) as info:
        model.chat("hi", [WEATHER_TOOL])
    assert not isinstance(info.value, lite.ToolCallParseError)
    with pytest.raises(lite.ServerError) as info:
        model.chat("hi", [WEATHER_TOOL])
    assert type(info.value) is lite.ServerError


@pytest.mark.parametrize("message,error_type,matches", [
    (MESSAGE, "server_error", True),
    ("The model produced output that does not match the expected Hermes 2 Pro format", "server_error", True),
    (f"Failed to parse input at pos 0: {OLD_REST}", "server_error", True),
    (f"{MESSAGE}.", "server_error", False),  # only the exact shapes
    (f"got exception: {MESSAGE}", "server_error", False),
    (MESSAGE, "invalid_request_error", False),  # another type is another error
    ("Failed to parse input at pos x: y", "server_error", False),
])
def test_only_the_two_documented_message_shapes_are_recognised(message, error_type, matches):
    error = {"code": 500, "message": message, "type": error_type}
    assert (tool_call_parse_error(500, error) is not None) is matches
    assert isinstance(error_from_response(500, json.dumps({"error": error})), lite.ToolCallParseError) is matches


def test_the_async_shim_raises_it_too(server):
    server.script(fs.sse_stream(ROLE, *CALL_SO_FAR, PARSE_ERROR, done=False, end="finish-close"))
    model = AsyncLlamaCppModel(server.url, timeout=(2, 5), retry=None)

    async def run():
        return [event async for event in model.stream("weather?", [WEATHER_TOOL])]

    with pytest.raises(lite.ToolCallParseError) as info:
        asyncio.run(run())
    assert info.value.tool_calls[0]["arguments"] == '{"city":"'
    model.close()


def test_recovering_by_asking_again_without_tools(server, model):
    """The README's recipe: on ToolCallParseError, ask again; here the second time without tools."""
    server.script(fs.sse_stream(ROLE, *CALL_SO_FAR, PARSE_ERROR, done=False, end="finish-close"),
                  fs.text_stream("It is sunny."))
    try:
        answer = model.chat("weather?", [WEATHER_TOOL]).text
    except lite.ToolCallParseError:
        answer = model.chat("weather? Answer in words.").text
    assert answer == "It is sunny." and "tools" not in server.requests[-1].json()


# -- a real llama-server (the bad_tool_call model) ----------------------------------------------


@pytest.mark.real_server
def test_real_server_stream_fails_with_the_call_so_far(bad_tool_call_server):
    with LlamaCppModel(bad_tool_call_server.base_url, timeout=(5, 60)) as model:
        events = []
        with pytest.raises(lite.ToolCallParseError) as info:
            for event in model.stream("What is the weather in Paris?", [WEATHER_TOOL]):
                events.append(event)
        error = info.value
        assert error.message.startswith("The model produced output that does not match the expected")
        assert [call["name"] for call in error.tool_calls] == ["get_weather"]
        assert error.tool_calls[0]["arguments"].startswith("{") and error.raw_output.startswith('{"name": "get_weather"')
        streamed = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                           if "contentBlockDelta" in e)
        assert streamed == error.tool_calls[0]["arguments"]
        # the server stays usable, and an integer-only tool gets a valid call from the same model
        result = model.chat("What is 2 + 3?", [ADD_TOOL], max_tokens=200, temperature=0)
        assert result.stop_reason == "tool_use" and result.tool_uses[0].name == "add"


@pytest.mark.real_server
def test_real_server_required_tool_choice_fails_the_same_way(bad_tool_call_server):
    with LlamaCppModel(bad_tool_call_server.base_url, timeout=(5, 60)) as model:
        with pytest.raises(lite.ToolCallParseError) as info:
            model.chat("Weather?", [WEATHER_TOOL], tool_choice={"any": {}})
    assert info.value.tool_calls and info.value.status_code == 500


def test_a_complete_call_before_the_error_is_rendered_closed(server, model):
    server.script(fs.sse_stream(ROLE, call_chunk(name="get_weather", arguments='{"city": "Oslo"}'), PARSE_ERROR,
                                done=False, end="finish-close"))
    with pytest.raises(lite.ToolCallParseError) as info:
        model.chat("weather?", [WEATHER_TOOL])
    assert info.value.raw_output == '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
