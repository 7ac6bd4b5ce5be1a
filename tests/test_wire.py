"""Request building: the exact JSON sent for messages, content, tools and params."""

from __future__ import annotations

import base64
import json

import pytest

from llamacpp_lite import InvalidRequestError
from llamacpp_lite._config import normalize_params
from llamacpp_lite._wire import build_chat_request, format_messages, format_tools
from tests.helpers import ADD_TOOL, WEATHER_TOOL


def build(messages, **kwargs):
    kwargs.setdefault("params", {})
    return build_chat_request(messages, model_id="default", **kwargs)


def test_plain_string_is_one_user_message_and_stream_asks_for_usage():
    assert build("hi") == {
        "model": "default",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_params_go_to_the_top_level_never_under_extra_body():
    params = normalize_params({"temperature": 0, "top_k": 1, "mirostat": 2, "dry_multiplier": 0.5,
                               "some_future_option": True, "extra_body": {"min_p": 0.2}})
    body = build("hi", params=params)
    assert "extra_body" not in body
    for name, value in {"temperature": 0, "top_k": 1, "mirostat": 2, "dry_multiplier": 0.5,
                        "some_future_option": True, "min_p": 0.2}.items():
        assert body[name] == value


def test_reference_names_are_translated_and_removed_ones_warned_once(recwarn):
    import llamacpp_lite._config as config

    config._warned.clear()
    with pytest.warns(config.UnsupportedParameterWarning, match="tfs_z"):
        params = normalize_params({"mirostat_lr": 0.1, "mirostat_ent": 5.0, "slot_id": 1, "penalty_last_n": 64,
                                   "tfs_z": 0.9, "top_a": 0.2, "seed": None})
    assert params == {"mirostat_eta": 0.1, "mirostat_tau": 5.0, "id_slot": 1, "repeat_last_n": 64}
    recwarn.clear()
    normalize_params({"tfs_z": 0.9, "top_a": 0.1})
    assert not [w for w in recwarn if issubclass(w.category, config.UnsupportedParameterWarning)]


def test_system_prompt_and_system_prompt_content():
    assert format_messages([], "be brief") == [{"role": "system", "content": "be brief"}]
    blocks = [{"text": "one. "}, {"cachePoint": {"type": "default"}}, {"text": "two."}]
    assert format_messages([], "ignored", blocks) == [{"role": "system", "content": "one. two."}]


def test_image_is_a_data_uri_and_audio_raw_base64():
    png, wav = b"\x89PNG\r\n", b"RIFF0000WAVE"
    msgs = format_messages([{"role": "user", "content": [
        {"text": "look"},
        {"image": {"format": "jpg", "source": {"bytes": png}}},
        {"audio": {"format": "wav", "source": {"bytes": wav}}},
    ]}])
    parts = msgs[0]["content"]
    assert parts[0] == {"type": "text", "text": "look"}
    assert parts[1] == {"type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(png).decode()}}
    assert parts[2] == {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}


def test_text_documents_are_inlined_and_binary_ones_refused():
    doc = {"document": {"format": "md", "name": "notes", "source": {"bytes": "# Title\nbody".encode()}}}
    msgs = format_messages([{"role": "user", "content": [doc]}])
    assert msgs[0]["content"] == "[document: notes (md)]\n# Title\nbody"
    pdf = {"document": {"format": "pdf", "name": "report", "source": {"bytes": b"%PDF-1.7"}}}
    with pytest.raises(InvalidRequestError, match="'report' has format 'pdf'"):
        format_messages([{"role": "user", "content": [pdf]}])


def test_location_sources_are_a_clear_error():
    image = {"image": {"format": "png", "source": {"location": {"type": "s3", "uri": "s3://b/k"}}}}
    with pytest.raises(InvalidRequestError, match="location source"):
        format_messages([{"role": "user", "content": [image]}])


def test_tool_use_and_tool_result_history():
    history = [
        {"role": "user", "content": [{"text": "add 1 and 2"}]},
        {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "use the tool"}}},
            {"toolUse": {"toolUseId": "t1", "name": "add", "input": {"a": 1, "b": 2}}},
        ]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "status": "success", "content": [{"json": {"sum": 3}}, {"text": "ok"}]}},
        ]},
    ]
    msgs = format_messages(history)
    assert msgs[1] == {"role": "assistant", "reasoning_content": "use the tool", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "add", "arguments": json.dumps({"a": 1, "b": 2})}}]}
    assert msgs[2] == {"role": "tool", "tool_call_id": "t1", "content": [
        {"type": "text", "text": '{"sum": 3}'}, {"type": "text", "text": "ok"}]}
    assert len(msgs) == 3


def test_tools_and_tool_choice_mapping():
    body = build("hi", tool_specs=[ADD_TOOL, WEATHER_TOOL], tool_choice={"any": {}})
    assert body["tool_choice"] == "required"
    assert body["tools"] == format_tools([ADD_TOOL, WEATHER_TOOL])
    assert body["tools"][0] == {"type": "function", "function": {
        "name": "add", "description": "Add two integers.", "parameters": ADD_TOOL["inputSchema"]["json"]}}
    assert build("hi", tool_specs=[ADD_TOOL], tool_choice={"auto": {}})["tool_choice"] == "auto"
    named = build("hi", tool_specs=[ADD_TOOL, WEATHER_TOOL], tool_choice={"tool": {"name": "get_weather"}})
    assert named["tool_choice"] == "required"
    assert [t["function"]["name"] for t in named["tools"]] == ["get_weather"]
    with pytest.raises(InvalidRequestError, match="not among the tool specs"):
        build("hi", tool_specs=[ADD_TOOL], tool_choice={"tool": {"name": "nope"}})


def test_conflicting_options_fail_before_sending():
    with pytest.raises(InvalidRequestError, match="custom grammar"):
        build("hi", tool_specs=[ADD_TOOL], params={"grammar": 'root ::= "x"'})
    with pytest.raises(InvalidRequestError, match="grammar and json_schema"):
        build("hi", params={"grammar": 'root ::= "x"', "json_schema": {}})
    with pytest.raises(InvalidRequestError, match="stream"):
        build("hi", params={"stream": False})
    with pytest.raises(InvalidRequestError, match="n must be 1"):
        build("hi", params={"n": 2})


@pytest.mark.parametrize("bad", [42, [{"content": []}], [{"role": "robot", "content": []}],
                                 [{"role": "user", "content": [{"mystery": 1}]}], [{"role": "user", "content": []}]])
def test_bad_messages_are_clear_errors(bad):
    with pytest.raises(InvalidRequestError):
        build(bad)


def test_stop_strings_ask_for_the_verbose_final_chunk():
    assert build("hi", params={"stop": ["x"]})["verbose"] is True
    assert "verbose" not in build("hi", params={})
    assert build("hi", params={"stop": ["x"], "verbose": False})["verbose"] is False
