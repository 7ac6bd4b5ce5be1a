"""LlamaCppModel against mocked HTTP: what is sent, and how answers and faults are handled."""

from __future__ import annotations

import json
import logging

import pytest
import responses
from responses import matchers

import llamacpp_lite as lite
from llamacpp_lite import LlamaCppModel
from tests.helpers import API_KEY, MOCK_URL, add_stream, sse_body, text_chunks


def test_sends_the_exact_json_and_streams_events(mock_api, mock_model):
    mock_model.update_config(params={"max_tokens": 5, "top_k": 1})
    add_stream(mock_api, *text_chunks("a", "b"), match=[matchers.json_params_matcher({
        "model": "default", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        "max_tokens": 5, "top_k": 1, "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
    })])
    result = mock_model.chat("hi", system_prompt="sys", temperature=0)
    assert result.text == "ab" and result.stop_reason == "end_turn"
    assert result.usage["outputTokens"] == 2


def test_per_call_kwargs_never_change_the_config(mock_api, mock_model):
    mock_model.update_config(params={"temperature": 0.5})
    add_stream(mock_api, *text_chunks("x"))
    list(mock_model.stream("hi", temperature=1.5, invocation_state={"a": 1}, model_state={}))
    sent = json.loads(mock_api.calls[0].request.body)
    assert sent["temperature"] == 1.5 and "invocation_state" not in sent and "model_state" not in sent
    assert mock_model.get_config()["params"] == {"temperature": 0.5}


def test_get_config_is_a_copy():
    model = LlamaCppModel(MOCK_URL, params={"top_k": 3})
    config = model.get_config()
    config["params"]["top_k"] = 99
    config["model_id"] = "changed"
    assert model.get_config() == {"model_id": "default", "params": {"top_k": 3}, "context_window_limit": None,
                                  "batch_limit": 512}


@pytest.mark.parametrize("base_url,expected", [
    ("http://llama.test", "http://llama.test/v1/chat/completions"),
    ("http://llama.test/", "http://llama.test/v1/chat/completions"),
    ("http://llama.test/v1", "http://llama.test/v1/chat/completions"),
    ("http://llama.test/proxy/llm/v1/", "http://llama.test/proxy/llm/v1/chat/completions"),
])
def test_base_url_prefix_and_trailing_v1(mock_api, base_url, expected):
    add_stream(mock_api, *text_chunks("x"), url=expected)
    assert LlamaCppModel(base_url, retry=None).chat("hi").text == "x"


def test_api_key_is_sent_but_never_shown(mock_api, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LLAMACPP_API_KEY", API_KEY)
    model = LlamaCppModel(MOCK_URL, retry=None, headers={"X-Trace": "1"})
    mock_api.add(responses.POST, MOCK_URL + "/v1/chat/completions", status=401,
                 json={"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}},
                 match=[matchers.header_matcher({"Authorization": f"Bearer {API_KEY}", "X-Trace": "1"})])
    with pytest.raises(lite.AuthenticationError) as info:
        list(model.stream("hi"))
    assert "Invalid API Key" in str(info.value)
    shown = " ".join([repr(model), str(model.get_config()), str(info.value), repr(info.value), caplog.text])
    assert API_KEY not in shown


def test_error_status_before_the_stream_carries_the_server_message(mock_api, mock_model):
    overflow = {"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 3680, "n_ctx": 256,
                          "message": "request (3680 tokens) exceeds the available context size (256 tokens)"}}
    mock_api.add(responses.POST, MOCK_URL + "/v1/chat/completions", status=400, json=overflow)
    with pytest.raises(lite.ContextWindowOverflowException) as info:
        list(mock_model.stream("hi"))
    assert info.value.n_ctx == 256 and "3680 tokens" in str(info.value)


@pytest.mark.parametrize("body,match", [
    (sse_body({"error": {"code": 500, "message": "boom inside", "type": "server_error"}}, done=False), "boom inside"),
    (sse_body(*text_chunks("a")[:2], "not json{"), "not JSON"),
    (sse_body(*text_chunks("a"), done=False), r"before \[DONE\]"),
    (sse_body(*text_chunks("a")[:2]), "without a finish reason"),
    (b"data: {\"choices\": [{\"delta\": {\"content\": \"\xff\xfe\"}}]}\n\n", "UTF-8"),
])
def test_broken_streams_raise_stream_error(mock_api, mock_model, body, match):
    mock_api.add(responses.POST, MOCK_URL + "/v1/chat/completions", body=body, content_type="text/event-stream")
    with pytest.raises(lite.StreamError, match=match):
        list(mock_model.stream("hi"))


def test_a_body_that_is_not_sse_is_a_stream_error(mock_api, mock_model):
    mock_api.add(responses.POST, MOCK_URL + "/v1/chat/completions", body="<html>proxy page</html>",
                 content_type="text/html")
    with pytest.raises(lite.StreamError, match="expected an event stream") as info:
        list(mock_model.stream("hi"))
    assert "<html>proxy page</html>" in info.value.payload


def test_connection_failure_is_a_connect_error(mock_api, mock_model):
    mock_api.add(responses.POST, MOCK_URL + "/v1/chat/completions",
                 body=__import__("requests").exceptions.ConnectionError("refused"))
    with pytest.raises(lite.ConnectError):
        list(mock_model.stream("hi"))


def test_image_refused_by_a_text_model_names_the_modality(mock_api, mock_model):
    mock_api.add(responses.POST, MOCK_URL + "/v1/chat/completions", status=500, json={"error": {
        "code": 500, "type": "server_error", "message": "image input is not supported - hint: ... mmproj"}})
    mock_api.add(responses.GET, MOCK_URL + "/props", json={"modalities": {"vision": False, "audio": False}})
    image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}
    with pytest.raises(lite.ModalityNotSupportedError) as info:
        list(mock_model.stream([{"role": "user", "content": [{"text": "see"}, image]}]))
    assert info.value.modality == "vision" and "image input is not supported" in str(info.value)


def test_count_tokens_uses_apply_template_then_tokenize(mock_api, mock_model):
    mock_api.add(responses.POST, MOCK_URL + "/apply-template", json={"prompt": "<|im_start|>user\nhi"},
                 match=[matchers.json_params_matcher({"messages": [{"role": "user", "content": "hi"}]}, strict_match=False)])
    mock_api.add(responses.POST, MOCK_URL + "/tokenize", json={"tokens": [1, 2, 3, 4]},
                 match=[matchers.json_params_matcher({"content": "<|im_start|>user\nhi"}, strict_match=False)])
    assert mock_model.count_tokens("hi") == 4


def test_count_tokens_falls_back_only_when_the_server_cannot_count(mock_api, mock_model, caplog):
    mock_api.add(responses.POST, MOCK_URL + "/apply-template", status=404,
                 json={"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
    assert mock_model.count_tokens("x" * 400) > 90
    assert "estimated" in caplog.text


@pytest.mark.parametrize("timeout", [-1, "5", (1, 2, 3), True])
def test_bad_timeouts_are_refused(timeout):
    with pytest.raises(lite.InvalidRequestError):
        LlamaCppModel(MOCK_URL, timeout=timeout)


def test_timeout_forms(mock_api):
    add_stream(mock_api, *text_chunks("x"))
    LlamaCppModel(MOCK_URL, timeout=(2, None), retry=None).chat("hi")
    assert mock_api.calls[0].request.req_kwargs["timeout"] == (2.0, None)


def test_bad_base_url():
    with pytest.raises(lite.InvalidRequestError):
        LlamaCppModel("localhost:8080")


@pytest.mark.parametrize("change", [{"model_id": 3}, {"context_window_limit": -1}, {"context_window_limit": "big"},
                                    {"params": ["top_k"]}, {"temperature": 0.1}])
def test_bad_config_is_refused_and_leaves_the_config_alone(change):
    model = LlamaCppModel(MOCK_URL, params={"top_k": 2})
    before = model.get_config()
    with pytest.raises(lite.InvalidRequestError):
        model.update_config(**change)
    assert model.get_config() == before
