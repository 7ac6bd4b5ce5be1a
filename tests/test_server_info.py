"""The many-models layer without a llama-server: pure parsers and checks, and error paths against
the fault server (tests/fault_server.py) for what a real router cannot be made to do on demand."""

from __future__ import annotations

import logging
import math
import time

import pytest

from llamacpp_lite import (
    BadRequestError,
    InvalidRequestError,
    LlamaCppModel,
    ModelLoadError,
    NotSupportedError,
    ReadTimeout,
    StreamError,
    UnknownModelError,
)
from llamacpp_lite._config import normalize_params
from llamacpp_lite._server_info import (
    check_filename,
    check_slot_id,
    find_model,
    lora_request,
    parse_lora_adapters,
    parse_metrics,
    parse_models,
    parse_slot_erase,
    parse_slot_restore,
    parse_slot_save,
    parse_slots,
)
from tests import fault_server as fs


def router_entry(model_id: str, value: str, **status: object) -> dict:
    return {"id": model_id, "aliases": [f"{model_id}-alias"], "object": "model",
            "status": {"value": value, "args": ["llama-server"], **status}}


# -- models ---------------------------------------------------------------------------------


def test_router_statuses_map_to_four_values():
    answer = {"data": [router_entry("a", "loaded"), router_entry("b", "loading"), router_entry("c", "unloaded"),
                       router_entry("d", "unloaded", failed=True, exit_code=1), router_entry("e", "sleeping"),
                       router_entry("f", "downloading"), router_entry("g", "downloaded")], "object": "list"}
    statuses = {model.id: model.status for model in parse_models(answer)}
    assert statuses == {"a": "loaded", "b": "loading", "c": "unloaded", "d": "failed", "e": "loaded",
                        "f": "loading", "g": "unloaded"}


def test_a_single_model_server_lists_its_model_as_loaded_with_its_context():
    answer = {"models": [{"name": "m.gguf"}], "object": "list",
              "data": [{"id": "m.gguf", "aliases": ["m.gguf"], "meta": {"n_ctx": 512, "n_vocab": 285}}]}
    (model,) = parse_models(answer)
    assert (model.id, model.status, model.n_ctx, model.aliases) == ("m.gguf", "loaded", 512, ("m.gguf",))


def test_find_model_by_id_then_alias():
    models = parse_models({"data": [router_entry("a", "loaded"), router_entry("b", "loaded")]})
    assert find_model(models, "b").id == "b" and find_model(models, "a-alias").id == "a"
    assert find_model(models, "zzz") is None


@pytest.mark.parametrize("answer", [[], {"data": {}}, {"data": [{"status": {"value": "x"}}]},
                                    {"data": [{"id": "a", "status": "loaded"}]}, {"data": [{"id": 5}]}])
def test_malformed_model_lists_are_stream_errors(answer):
    with pytest.raises(StreamError):
        parse_models(answer)


# -- slots ----------------------------------------------------------------------------------


def test_slot_results_are_typed():
    save = parse_slot_save({"id_slot": 0, "filename": "s.bin", "n_saved": 195, "n_written": 103064,
                            "timings": {"save_ms": 0.195}})
    restore = parse_slot_restore({"id_slot": 1, "filename": "s.bin", "n_restored": 195, "n_read": 103064,
                                  "timings": {"restore_ms": 0.147}})
    erase = parse_slot_erase({"id_slot": 0, "n_erased": 195})
    assert (save.n_saved, save.n_written, save.save_ms) == (195, 103064, 0.195)
    assert (restore.id_slot, restore.n_restored, restore.n_read, restore.restore_ms) == (1, 195, 103064, 0.147)
    assert (erase.id_slot, erase.n_erased) == (0, 195)
    (slot,) = parse_slots([{"id": 0, "n_ctx": 1024, "is_processing": True, "params": {"top_k": 40}}])
    assert (slot.id, slot.n_ctx, slot.is_processing, slot.params) == (0, 1024, True, {"top_k": 40})


@pytest.mark.parametrize("parse, answer", [(parse_slot_save, {"id_slot": 0, "filename": "s"}),
                                           (parse_slot_erase, {"id_slot": "0", "n_erased": 1}),
                                           (parse_slots, {"id": 0}), (parse_slots, [{"id": 0}])])
def test_malformed_slot_answers_are_stream_errors(parse, answer):
    with pytest.raises(StreamError):
        parse(answer)


@pytest.mark.parametrize("name", ["", "a/b", "..", "a\\b", "a:b", "a*", "x?", 'q"', "<a>", "a|b", "a\nb", " a",
                                  "a ", "a.", "x" * 256, 5])
def test_slot_file_names_the_server_refuses_are_refused_before_sending(name):
    with pytest.raises(InvalidRequestError):
        check_filename(name)


def test_plain_slot_file_names_pass():
    assert check_filename("conversation-1.bin") == "conversation-1.bin"
    assert check_filename("ü" * 127) == "ü" * 127  # 254 bytes


@pytest.mark.parametrize("slot_id", [-1, 2, 1.0, True, "0"])
def test_slot_ids_the_server_would_wrap_are_refused(slot_id):
    with pytest.raises(InvalidRequestError):
        check_slot_id(slot_id, 2)


# -- LoRA -----------------------------------------------------------------------------------


def test_lora_mapping_and_list_forms_give_the_servers_list():
    assert lora_request({0: 0.5, "1": 1}) == [{"id": 0, "scale": 0.5}, {"id": 1, "scale": 1.0}]
    assert lora_request([{"id": 0, "scale": 0}]) == [{"id": 0, "scale": 0.0}]
    assert lora_request({}) == []
    assert normalize_params({"lora": {2: -0.5}}) == {"lora": [{"id": 2, "scale": -0.5}]}


@pytest.mark.parametrize("value", [{"id": 0, "scale": 1}, [{"id": 0}], [{"id": 0, "scale": 1, "x": 2}], {-1: 1.0},
                                   {0: "big"}, {0: math.nan}, {0: True}, {"a": 1}, "0:1", [{"id": 0, "scale": 1},
                                   {"id": 0, "scale": 2}], {0: 1, "0": 2}])
def test_bad_lora_values_are_refused_before_sending(value):
    with pytest.raises(InvalidRequestError):
        normalize_params({"lora": value})


def test_lora_adapters_are_typed():
    (adapter,) = parse_lora_adapters([{"id": 0, "path": "/a.gguf", "scale": 1, "task_name": ""}])
    assert (adapter.id, adapter.path, adapter.scale) == (0, "/a.gguf", 1.0)
    with pytest.raises(StreamError):
        parse_lora_adapters([{"id": 0, "path": "/a.gguf"}])


# -- metrics --------------------------------------------------------------------------------

METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1.23457e+06
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 41853.5
llamacpp:requests_processing 0
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 12
odd_gauge{a="x y",b="q\\"}"} -Inf 1700000000000

llamacpp:n_busy_slots_per_decode NaN
"""


def test_prometheus_text_is_parsed_with_cpp_number_formats_and_labels():
    metrics = parse_metrics(METRICS)
    assert metrics["llamacpp:prompt_tokens_total"] == 1234570.0
    assert metrics["llamacpp:prompt_tokens_seconds"] == 41853.5
    assert metrics["llamacpp:requests_processing"] == 0.0
    assert metrics['llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"}'] == 12.0
    assert metrics['odd_gauge{a="x y",b="q\\"}"}'] == -math.inf
    assert math.isnan(metrics["llamacpp:n_busy_slots_per_decode"])
    assert len(metrics) == 6


@pytest.mark.parametrize("line", ["llamacpp:x", "llamacpp:x one", "9bad 1", "llamacpp:x 1_000", "<html>"])
def test_lines_that_are_not_samples_are_stream_errors(line):
    with pytest.raises(StreamError):
        parse_metrics(line)


# -- against the fault server: what a real router does not do on demand ------------------------


@pytest.fixture
def server():
    srv = fs.FaultServer()
    yield srv
    srv.stop()


def models_answer(value: str, **status: object) -> fs.Handler:
    return fs.respond_json(200, {"data": [router_entry("alpha", value, **status)], "object": "list"})


def test_a_load_that_keeps_hitting_the_model_limit_ends_with_a_timeout_naming_it(server, caplog):
    limit = {"error": {"code": 500, "message": "model limit reached, try again later", "type": "server_error"}}
    server.script(models_answer("unloaded"))
    server.default = fs.respond_json(500, limit)
    caplog.set_level(logging.DEBUG, logger="llamacpp_lite")
    with LlamaCppModel(server.url, retry=None) as model:
        started = time.monotonic()
        with pytest.raises(ReadTimeout, match="'alpha' could not be loaded within 0.4 s: .*model limit reached"):
            model.load_model("alpha", timeout=0.4)
    assert time.monotonic() - started < 2
    posts = [request for request in server.requests if request.method == "POST"]
    assert len(posts) >= 2 and all(request.json() == {"model": "alpha"} for request in posts)
    assert "asking again" in caplog.text


def test_a_model_stuck_loading_times_out_with_its_status(server):
    server.default = models_answer("loading")
    with LlamaCppModel(server.url, retry=None) as model, pytest.raises(ReadTimeout, match="status: loading"):
        model.load_model("alpha", timeout=0.3)
    assert all(request.method == "GET" for request in server.requests)  # loading already: no second load


def test_a_load_that_fails_after_starting_is_a_model_load_error(server):
    server.script(models_answer("unloaded"), fs.respond_json(200, {"success": True}), models_answer("loading"),
                  models_answer("loading"), models_answer("unloaded", failed=True, exit_code=1))
    with LlamaCppModel(server.url, retry=None) as model, pytest.raises(ModelLoadError) as caught:
        model.load_model("alpha", timeout=5)
    assert (caught.value.model_id, caught.value.exit_code, caught.value.status_code) == ("alpha", 1, 500)


def test_unknown_ids_are_refused_without_a_load_request(server):
    server.default = models_answer("unloaded")
    with LlamaCppModel(server.url, retry=None) as model, pytest.raises(UnknownModelError) as caught:
        model.unload_model("gamma")
    assert caught.value.model_id == "gamma" and caught.value.available == ["alpha"]
    assert "'gamma' not found; the server offers: alpha" in str(caught.value)
    assert server.paths == ["/models"]


def test_a_model_list_of_the_wrong_shape_is_a_stream_error(server):
    server.default = fs.respond_json(200, {"models": []})
    with LlamaCppModel(server.url, retry=None) as model, pytest.raises(StreamError):
        model.models()


def test_metrics_without_metrics_is_not_supported_and_garbage_is_a_stream_error(server):
    server.script(fs.respond_json(501, {"error": {"code": 501, "type": "not_supported_error",
                                                  "message": "This server does not support metrics endpoint."}}),
                  fs.respond(200, "<html>proxy page</html>", content_type="text/html"))
    with LlamaCppModel(server.url, retry=None) as model:
        with pytest.raises(NotSupportedError):
            model.metrics()
        with pytest.raises(StreamError):
            model.metrics()
    assert server.paths == ["/metrics?model=default"] * 2


def test_arguments_are_checked_before_anything_is_sent(server):
    with LlamaCppModel(server.url, retry=None) as model:
        for call in (lambda: model.load_model(""), lambda: model.unload_model("a", timeout=0),
                     lambda: model.load_model("a", timeout=math.inf), lambda: model.save_slot(-1, "x"),
                     lambda: model.restore_slot(0, "../etc/passwd"), lambda: model.erase_slot(1.5),
                     lambda: model.set_lora_adapters({0: math.nan}), lambda: model.props(""),
                     lambda: model.chat("hi", lora={0: "big"})):
            with pytest.raises(InvalidRequestError):
                call()
    assert server.requests == []


def test_a_model_that_started_loading_meanwhile_is_waited_for_not_an_error(server):
    running = {"error": {"code": 400, "message": "model is already running", "type": "invalid_request_error"}}
    server.script(models_answer("unloaded"), fs.respond_json(400, running), models_answer("loading"),
                  models_answer("loading"), models_answer("loaded"))
    with LlamaCppModel(server.url, retry=None) as model:
        assert model.load_model("alpha", timeout=5).status == "loaded"
    assert [request.method for request in server.requests] == ["GET", "POST", "GET", "GET", "GET"]


def test_a_refused_unload_of_a_model_that_still_runs_is_raised(server):
    refused = {"error": {"code": 400, "message": "model is not running", "type": "invalid_request_error"}}
    server.script(models_answer("loaded"), fs.respond_json(400, refused), models_answer("loaded"))
    with LlamaCppModel(server.url, retry=None) as model, pytest.raises(BadRequestError, match="not running"):
        model.unload_model("alpha", timeout=5)
