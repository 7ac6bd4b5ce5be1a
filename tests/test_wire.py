"""Request building: the exact JSON sent for messages, content, tools and params."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamacpp_lite import InvalidRequestError
from llamacpp_lite._config import normalize_params
from llamacpp_lite._content import AUDIO_FORMATS, IMAGE_FORMATS
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


# -- content blocks with several parts, system messages, media formats (#11) -----------------------

PNG, WAV = b"\x89PNG\r\n\x1a\n....", b"RIFF0000WAVEfmt "


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def user(*blocks: Any) -> list:
    return [{"role": "user", "content": list(blocks)}]


def parts_of(*blocks: Any) -> Any:
    return format_messages(user(*blocks))[0]["content"]


def image_part(data: bytes, mime: str = "png") -> dict:
    return {"type": "image_url", "image_url": {"url": f"data:image/{mime};base64,{b64(data)}"}}


def audio_part(data: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": b64(data), "format": fmt}}


def test_a_block_with_media_and_text_sends_both_media_first():
    """The reference provider's documented shape: media and question in one block."""
    audio = {"audio": {"source": {"bytes": WAV}, "format": "wav"}, "text": "What do you hear in this audio?"}
    image = {"text": "Describe this image", "image": {"source": {"bytes": PNG}, "format": "png"}}
    assert parts_of(audio) == [audio_part(WAV), {"type": "text", "text": "What do you hear in this audio?"}]
    assert parts_of(image) == [image_part(PNG), {"type": "text", "text": "Describe this image"}]


def test_text_image_text_audio_blocks_send_four_parts_in_order():
    parts = parts_of({"text": "first"}, {"image": {"format": "jpg", "source": {"bytes": PNG}}},
                     {"text": "second"}, {"audio": {"format": "mp3", "source": {"bytes": b"ID3\x04"}}})
    assert parts == [{"type": "text", "text": "first"}, image_part(PNG, "jpeg"),
                     {"type": "text", "text": "second"}, audio_part(b"ID3\x04", "mp3")]


def test_media_in_a_tool_result_and_several_parts_per_block_there():
    history = [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "snap", "input": {}}}]},
               {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "status": "success", "content": [
                   {"image": {"format": "gif", "source": {"bytes": b"GIF89a"}}, "text": "the photo"}]}},
                   {"text": "what is in it?"}]}]
    msgs = format_messages(history)
    assert msgs[1] == {"role": "tool", "tool_call_id": "t1",
                       "content": [image_part(b"GIF89a", "gif"), {"type": "text", "text": "the photo"}]}
    assert msgs[2] == {"role": "user", "content": "what is in it?"}


@pytest.mark.parametrize("block", [
    {"text": "hi", "mystery": 1},
    {"image": {"format": "png", "source": {"bytes": PNG}}, "imagee": {}},
    {"mystery": {"text": "x"}},
])
def test_an_unknown_key_is_refused_by_name(block):
    with pytest.raises(InvalidRequestError, match=r"unknown content block key '(mystery|imagee)'"):
        parts_of(block)


def test_system_messages_are_sent_where_they_are_after_the_system_prompt():
    history = [{"role": "system", "content": [{"text": "Answer in French."}]},
               {"role": "user", "content": [{"text": "hi"}]},
               {"role": "system", "content": "Now in German."},
               {"role": "user", "content": [{"text": "again"}]}]
    assert format_messages(history, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Now in German."},
        {"role": "user", "content": "again"},
    ]
    blocks = [{"text": "From blocks."}, {"cachePoint": {"type": "default"}}]
    assert format_messages(history[:2], "ignored", blocks)[:2] == [
        {"role": "system", "content": "From blocks."}, {"role": "system", "content": "Answer in French."}]
    assert format_messages(history[:2])[0] == {"role": "system", "content": "Answer in French."}
    body = build(history, system_prompt="Be brief.")
    assert [m["role"] for m in body["messages"]] == ["system", "system", "user", "system", "user"]


@pytest.mark.parametrize("fmt", sorted(IMAGE_FORMATS))
def test_every_decodable_image_format_is_sent_with_its_mime_type(fmt):
    assert parts_of({"image": {"format": fmt, "source": {"bytes": PNG}}}) == [image_part(PNG, IMAGE_FORMATS[fmt])]


@pytest.mark.parametrize("fmt", sorted(AUDIO_FORMATS))
def test_every_decodable_audio_format_is_sent_under_its_name(fmt):
    assert parts_of({"audio": {"format": fmt, "source": {"bytes": WAV}}}) == [audio_part(WAV, AUDIO_FORMATS[fmt])]


def test_format_names_are_case_insensitive_and_may_be_mime_types():
    assert IMAGE_FORMATS["jpg"] == IMAGE_FORMATS["jpeg"] == "jpeg"
    for name in ("JPG", "image/jpeg", " Jpeg "):
        assert parts_of({"image": {"format": name, "source": {"bytes": PNG}}}) == [image_part(PNG, "jpeg")]
    assert parts_of({"audio": {"format": "audio/mpeg", "source": {"bytes": WAV}}}) == [audio_part(WAV, "mp3")]


@pytest.mark.parametrize("kind,fmt", [("image", "webp"), ("image", "tiff"), ("image", "heic"), ("image", "svg"),
                                      ("audio", "ogg"), ("audio", "opus"), ("audio", "m4a"), ("audio", "aac")])
def test_formats_llama_server_cannot_decode_are_refused_before_sending(kind, fmt):
    with pytest.raises(InvalidRequestError) as info:
        parts_of({kind: {"format": fmt, "source": {"bytes": b"RIFF0000WEBPVP8 "}}})
    message = str(info.value)
    assert f"{kind} format {fmt!r} is not decodable by llama-server; it decodes " in message
    names = message.split("it decodes ")[1].split(";")[0].replace("(", "").replace(")", "").replace(",", "").split()
    assert set(names) == set(IMAGE_FORMATS if kind == "image" else AUDIO_FORMATS.values())
    assert ("ffmpeg" in message) == (fmt == "webp")


def test_structural_blocks_in_the_wrong_role_are_refused_not_dropped():
    tool_use = {"toolUse": {"toolUseId": "t", "name": "add", "input": {}}}
    tool_result = {"toolResult": {"toolUseId": "t", "content": [{"text": "3"}]}}
    reasoning = {"reasoningContent": {"reasoningText": {"text": "hmm"}}}
    for role, block, home in [("user", tool_use, "an assistant"), ("user", reasoning, "an assistant"),
                              ("assistant", tool_result, "a user"), ("system", tool_use, "an assistant")]:
        with pytest.raises(InvalidRequestError, match=f"belongs in {home} message"):
            format_messages([{"role": role, "content": [block]}])
    nested = {"toolResult": {"toolUseId": "t", "content": [tool_result]}}
    with pytest.raises(InvalidRequestError, match="'toolResult' block cannot appear here"):
        format_messages(user(nested))


def test_reasoning_shapes_guard_and_citation_content():
    redacted = {"reasoningContent": {"redactedContent": b"\x00opaque"}}
    thought = {"reasoningContent": {"reasoningText": {"text": "think", "signature": "sig"}}}
    msgs = format_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": [redacted]},
                            {"role": "assistant", "content": [thought]}])
    assert msgs[1:] == [{"role": "assistant", "content": "", "reasoning_content": "think"}]
    guard = {"guardContent": {"text": {"text": "be safe", "qualifiers": ["query"]}}}
    cited = {"citationsContent": {"citations": [{"title": "t"}], "content": [{"text": "A"}, {"text": "B"}]}}
    assert parts_of(guard) == "be safe"
    assert format_messages([{"role": "assistant", "content": [cited]}])[0]["content"] == [
        {"type": "text", "text": "A"}, {"type": "text", "text": "B"}]


class Unserializable:
    pass


@pytest.mark.parametrize("kwargs,match", [
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "content block must be a mapping, got str"),
    ({"messages": [{"role": "user", "content": [{"text": 3}]}]}, "text must be a string, got int"),
    ({"messages": user({"image": {"format": "png", "source": {"bytes": "iVBOR"}}})}, "bytes must be bytes, got str"),
    ({"messages": user({"image": {"format": 7, "source": {"bytes": PNG}}})}, "image format must be a string"),
    ({"messages": user({"image": {"format": "png", "source": {"bytes": b""}}})}, "source bytes are empty"),
    ({"messages": user({"image": {"format": "png"}}), }, r"needs a source \{'bytes': ...\}"),
    ({"messages": user({"image": "cat.png"})}, "image must be a mapping, got str"),
    ({"messages": user({"document": {"format": "txt", "name": 1, "source": {"bytes": b"x"}}})}, "name must be"),
    ({"messages": user({"video": {"format": None, "source": {"bytes": b"x"}}})}, "video format must be a string"),
    ({"messages": user({"json": {1, 2}})}, "json block cannot be sent as JSON: it holds a value of type set"),
    ({"messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f",
                                                                   "input": Unserializable()}}]}]},
     "toolUse 'f' input cannot be sent as JSON: it holds a value of type Unserializable"),
    ({"messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": 1, "name": "f"}}]}]},
     "string 'toolUseId' and 'name'"),
    ({"messages": user({"toolResult": {"toolUseId": "t", "content": "3"}})}, "content must be a list, got str"),
    ({"messages": user({"toolResult": {"content": []}})}, "string 'toolUseId'"),
    ({"messages": [{"role": "assistant", "content": [{"reasoningContent": {"reasoningText": "x"}}]}]},
     "reasoningContent must be"),
    ({"messages": [{"role": "assistant", "content": [{"reasoningContent": {}}]}]}, "reasoningContent must be"),
    ({"messages": [{"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": 5}}}]}]},
     "reasoningContent must be"),
    ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "content must be a list, got dict"),
    ({"messages": [{"role": ["user"], "content": []}]}, "role must be 'user', 'assistant' or 'system'"),
    ({"messages": ["hi"]}, "message 0 must be a mapping"),
    ({"messages": {"role": "user"}}, "messages .* must be a list, got dict"),
    ({"messages": [{"role": "system", "content": [{"cachePoint": {}}]}]}, r"message 0 \(system\) has no content"),
    ({"tool_specs": [ADD_TOOL, "add"]}, "tool spec 1 must be a mapping with a non-empty string 'name'"),
    ({"tool_specs": [{"name": 5}]}, "tool spec 0 must be a mapping"),
    ({"tool_specs": [{"name": "f", "inputSchema": "{}"}]}, r"tool spec 'f': .*inputSchema"),
    ({"tool_specs": [{"name": "f", "inputSchema": {"json": []}}]}, r"tool spec 'f': .*inputSchema"),
    ({"tool_specs": [{"name": "f", "description": 3}]}, "description must be a string"),
    ({"tool_specs": ADD_TOOL}, "tool_specs must be a list, got dict"),
    ({"tool_specs": [ADD_TOOL], "tool_choice": "auto"}, "tool_choice must be"),
    ({"tool_specs": [ADD_TOOL], "tool_choice": {"auto": {}, "any": {}}}, "tool_choice must be"),
    ({"tool_specs": [ADD_TOOL], "tool_choice": {"tool": "add"}}, "tool_choice must be"),
    ({"tool_specs": [ADD_TOOL], "tool_choice": {"tool": {"name": 1}}}, "tool_choice must be"),
    ({"tool_specs": [ADD_TOOL], "tool_choice": {"none": {}}}, "tool_choice must be"),
    ({"tool_specs": [ADD_TOOL], "tool_choice": {"auto": None}}, "tool_choice must be"),
    ({"tool_choice": {"tool": {"name": "add"}}}, "not among the tool specs"),
    ({"system_prompt": ["be brief"]}, "system_prompt must be a string, got list"),
    ({"system_prompt_content": "be brief"}, "system_prompt_content must be a list, got str"),
    ({"system_prompt_content": ["be brief"]}, "system_prompt_content blocks must be mappings"),
    ({"system_prompt_content": [{"text": 1}]}, "carry a string 'text' or a 'cachePoint', got 'text' holding int"),
    ({"system_prompt_content": [{"image": {}}]}, "got 'image'"),
    ({"params": [("temperature", 0)]}, "params must be a mapping, got list"),
    ({"params": {"stream_options": True}}, "stream_options must be a mapping"),
])
def test_arguments_of_the_wrong_shape_are_clear_errors(kwargs, match):
    messages = kwargs.pop("messages", "hi")
    with pytest.raises(InvalidRequestError, match=match):
        build(messages, **kwargs)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("message,match", [
    ({"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "add", "input": {"a": NAN, "b": 2}}}]},
     r"message 0 \(assistant\): toolUse 'add' input cannot be sent as JSON: a holds NaN"),
    ({"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {"x": [1, {"y": -INF}]}}}]},
     r"toolUse 'f' input cannot be sent as JSON: x\[1\]\.y holds -Infinity"),
    ({"role": "user", "content": [{"json": {"score": INF}}]},
     r"message 0 \(user\): json block cannot be sent as JSON: score holds Infinity"),
    ({"role": "user", "content": [{"json": NAN}]}, r"json block cannot be sent as JSON: it holds NaN"),
    ({"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"json": {"v": [NAN]}}]}}]},
     r"message 0 \(user\) toolResult 't': json block cannot be sent as JSON: v\[0\] holds NaN"),
])
def test_nan_inside_json_sent_as_a_string_is_refused_naming_the_block(message, match):
    """JSON embedded in a string (tool arguments, json blocks) is strict too: before, NaN went out
    inside the arguments string, passed the body's check, and llama-server answered 500."""
    with pytest.raises(InvalidRequestError, match=match):
        build([message])


def test_finite_floats_in_tool_input_and_json_blocks_are_sent_exactly():
    messages = [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f",
                                                               "input": {"x": 1.5, "big": 1e308, "s": "NaN"}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"json": {"r": -0.25}}]}}]}]
    sent = build(messages)["messages"]
    assert json.loads(sent[0]["tool_calls"][0]["function"]["arguments"]) == {"x": 1.5, "big": 1e308, "s": "NaN"}
    assert json.loads(sent[1]["content"]) == {"r": -0.25}


# -- property: nothing but a body or InvalidRequestError, whatever the input (#10) -----------------
#
# Valid requests are drawn from realistic Strands pieces, then damaged 0-3 times at random places
# (a value replaced by any JSON-ish value, bytes or a tuple; a key deleted; an unknown key added).
# Undamaged requests must build; damaged ones must build or raise InvalidRequestError, nothing else.

WORDS = ["role", "content", "text", "image", "audio", "source", "bytes", "format", "name", "toolUse", "toolUseId",
         "input", "toolResult", "reasoningContent", "reasoningText", "cachePoint", "json", "auto", "any", "tool",
         "user", "assistant", "system", "png", "webp", "wav", "stop", "n", "stream_options", "grammar", ""]
anything = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 3) | st.floats() | st.binary(max_size=6)
    | st.sampled_from(WORDS) | st.text(max_size=4),
    lambda inner: (st.lists(inner, max_size=3) | st.lists(inner, max_size=2).map(tuple)
                   | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=3), inner, max_size=3)),
    max_leaves=10,
)


def media(fmt: str, data: bytes = b"\x89PNG....") -> dict:
    return {"format": fmt, "source": {"bytes": data}}


VALID_MESSAGES = [
    {"role": "user", "content": [{"text": "hi"}]},
    {"role": "user", "content": "plain string content"},
    {"role": "user", "content": [{"image": media("png"), "text": "Describe this image"}, {"text": "and"},
                                 {"audio": media("wav", WAV)}]},
    {"role": "user", "content": [{"document": {"format": "md", "name": "n", "source": {"bytes": b"# t"}}},
                                 {"json": {"a": [1, 2.5, None]}}, {"cachePoint": {"type": "default"}}]},
    {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": "think", "signature": "s"}}},
                                      {"text": "calling"},
                                      {"toolUse": {"toolUseId": "t1", "name": "add", "input": {"a": 1, "b": 2}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "status": "success", "content": [
        {"json": {"sum": 3}}, {"image": media("jpg"), "text": "chart"}]}}, {"text": "go on"}]},
    {"role": "assistant", "content": [{"reasoningContent": {"redactedContent": b"\x01"}}, {"text": "ok"},
                                      {"citationsContent": {"content": [{"text": "cited"}], "citations": []}}]},
    {"role": "system", "content": [{"text": "Answer briefly."}, {"guardContent": {"text": {"text": "g"}}}]},
]


@st.composite
def valid_requests(draw: Any) -> dict:
    """Keyword arguments of a request that must build."""
    return {
        "messages": draw(st.lists(st.sampled_from(VALID_MESSAGES), min_size=1, max_size=4)),
        "tool_specs": draw(st.sampled_from([None, [], [ADD_TOOL], [ADD_TOOL, WEATHER_TOOL],
                                            [{"name": "f", "inputSchema": {"type": "object"}}]])),
        "tool_choice": draw(st.sampled_from([None, {"auto": {}}, {"any": {}}])),
        "system_prompt": draw(st.sampled_from([None, "", "Be brief."])),
        "system_prompt_content": draw(st.sampled_from([None, [], [{"text": "a"}, {"cachePoint": {"type": "x"}}]])),
        "params": draw(st.sampled_from([{}, {"temperature": 0.5, "stop": ["x"]}, {"stream_options": {}, "n": 1}])),
    }


def paths(value: Any, prefix: tuple = ()) -> list:
    """Every path into the nested lists and mappings of `value` (the empty path included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def damaged(request: dict, path: tuple, how: str, value: Any) -> dict:
    """A deep copy of `request` with the value at `path` replaced, deleted or given an unknown key."""
    request = copy.deepcopy(request)
    *head, last = path
    node = request
    for key in head:
        node = node[key]
    if how == "delete" and isinstance(node, dict) and head:  # the arguments themselves stay
        del node[last]
    elif how == "unknown key" and isinstance(node[last], dict):
        node[last]["mystery"] = value
    else:
        node[last] = value
    return request


@st.composite
def damaged_requests(draw: Any) -> dict:
    request = draw(valid_requests())
    pick = draw(st.randoms(use_true_random=True))  # seeded by hypothesis; uniform, unlike sampled_from
    for _ in range(draw(st.integers(1, 3))):
        places = [p for p in paths(request) if p]
        path = pick.choices(places, weights=[len(p) for p in places])[0]  # deep places more often
        request = damaged(request, path, pick.choice(["replace", "delete", "unknown key"]), draw(anything))
    return request


PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def body_or_clear_error(**kwargs: Any) -> dict | None:
    """Build a request; only a body or InvalidRequestError may come out, and a body's messages are JSON."""
    try:
        body = build_chat_request(model_id="default", **kwargs)
    except InvalidRequestError as exc:
        assert str(exc)
        return None
    assert isinstance(body, dict) and body["stream"] is True
    json.dumps(body["messages"], allow_nan=False)  # every value in messages was checked or made here
    return body


@PROPERTY
@given(valid_requests())
def test_valid_strands_requests_build_and_keep_every_part(request):
    body = body_or_clear_error(**request)
    assert body is not None
    sent = json.dumps(body["messages"])
    for message in request["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            for key in ("image", "audio"):
                if key in block:
                    assert base64.b64encode(block[key]["source"]["bytes"]).decode() in sent
            if isinstance(block.get("text"), str):
                assert json.dumps(block["text"])[1:-1] in sent


@PROPERTY
@given(damaged_requests())
def test_damaged_requests_give_a_body_or_invalid_request_error(request):
    body_or_clear_error(**request)


@PROPERTY
@given(anything, anything, anything, anything, anything, anything)
def test_any_json_ish_input_gives_a_body_or_invalid_request_error(msgs, specs, choice, system_prompt,
                                                                   system_content, request_params):
    body_or_clear_error(messages=msgs, tool_specs=specs, tool_choice=choice, system_prompt=system_prompt,
                        system_prompt_content=system_content, params=request_params)
