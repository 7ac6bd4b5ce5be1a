"""The inference endpoints' error paths against the fault-injecting socket server (tests/fault_server.py).

What a healthy llama-server does not produce on demand: 500s and context errors on embeddings
(the server's exact bodies), malformed answers, silence, 503 while loading, streams that break
off or carry an error, and aborts. Only 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import array
import asyncio
import base64
import sys
import threading
import time

import pytest

import llamacpp_lite as lite
from llamacpp_lite import DEFAULT_RETRY, AsyncLlamaCppModel, Limits, LlamaCppModel
from llamacpp_lite._embeddings import inputs_per_request
from tests import fault_server as fs

FAST = DEFAULT_RETRY.new(backoff_factor=0.01, backoff_jitter=0.0)
LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
TOO_LARGE = {"error": {"code": 500, "message": "input (600 tokens) is too large to process. increase the physical "
                                              "batch size (current batch size: 512)", "type": "server_error"}}
OVERFLOW = {"error": {"code": 400, "message": "request (3001 tokens) exceeds the available context size (2048 "
                                              "tokens), try increasing it", "type": "exceed_context_size_error",
                      "n_prompt_tokens": 3001, "n_ctx": 2048}}
NO_FIM = {"error": {"code": 501, "message": "Infill is not supported by this model: prefix token is missing. suffix "
                                            "token is missing. middle token is missing. ", "type": "not_supported_error"}}
BAD_ID = {"error": {"code": 500, "message": "vector::_M_range_check: __n (which is 99999) >= this->size() (which is "
                                            "285)", "type": "server_error"}}
LONG = "x" * 600
BPE_MODEL = fs.respond_json(200, {"object": "list", "data": [{"id": "m", "meta": {"vocab_type": 2, "n_vocab": 285}}]})


@pytest.fixture
def server():
    with fs.FaultServer() as srv:
        yield srv


@pytest.fixture
def model(server):
    with LlamaCppModel(server.url, timeout=(2, 2), retry=None) as client:
        yield client


def vector(*numbers: float) -> str:
    values = array.array("f", numbers)
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def embeddings_echo(width: int = 4):
    """Answer each embeddings request like llama-server: vector i = [len(input i)] * width, in reverse order."""
    def handler(conn, request):
        inputs = request.json()["input"]
        data = [{"embedding": vector(*[float(len(item))] * width), "index": index, "object": "embedding"}
                for index, item in reversed(list(enumerate(inputs)))]
        usage = {"prompt_tokens": sum(map(len, inputs)), "total_tokens": sum(map(len, inputs))}
        fs.respond_json(200, {"model": "m", "object": "list", "usage": usage, "data": data})(conn, request)
    return handler


def tokens(n: int):
    return fs.respond_json(200, {"tokens": list(range(n))})


def completion_final(content: str = "", **extra) -> dict:
    return {"index": 0, "content": content, "tokens": [], "id_slot": 0, "stop": True, "model": "m",
            "tokens_predicted": 2, "tokens_evaluated": 3, "prompt": "hi", "has_new_line": False, "truncated": False,
            "stop_type": "limit", "stopping_word": "", "tokens_cached": 5, "timings": {"predicted_n": 2}, **extra}


def completion_partial(content: str) -> dict:
    return {"index": 0, "content": content, "tokens": [5], "stop": False, "id_slot": -1, "tokens_predicted": 1,
            "tokens_evaluated": 3}


# -- embeddings ------------------------------------------------------------------------------


def test_a_refused_request_names_the_long_input_counting_only_what_may_be_long(server, model):
    server.script(fs.respond_json(500, TOO_LARGE), BPE_MODEL, tokens(600))
    with pytest.raises(lite.InputTooLongError) as info:
        model.embed(["short", "also short", LONG])
    assert (info.value.index, info.value.n_tokens, info.value.limit) == (2, 600, 512)
    assert isinstance(info.value.__cause__, lite.ServerError)
    assert server.paths == ["/v1/embeddings", "/v1/models", "/tokenize"]  # short texts are not counted (BPE)
    assert server.requests[2].json() == {"model": "default", "content": LONG, "add_special": True}


def test_without_a_known_tokenizer_every_input_is_counted(server, model):
    unigram = {"object": "list", "data": [{"id": "m", "meta": {"vocab_type": 4}}]}
    server.script(fs.respond_json(500, TOO_LARGE), fs.respond_json(200, unigram), tokens(3), tokens(600),
                  fs.respond_json(500, TOO_LARGE), fs.respond_json(404, {"error": {"type": "not_found_error"}}),
                  tokens(3), tokens(600))
    for _ in range(2):  # unigram (NFKC may make many tokens of one character), then no /v1/models at all
        with pytest.raises(lite.InputTooLongError, match="input 1 has 600 tokens"):
            model.embed(["short", LONG])
    assert server.paths == ["/v1/embeddings", "/v1/models", "/tokenize", "/tokenize"] * 2


def test_a_refusal_no_input_explains_is_the_servers_error(server, model):
    server.script(fs.respond_json(500, TOO_LARGE), BPE_MODEL, tokens(100))
    with pytest.raises(lite.ServerError, match="too large to process") as info:
        model.embed(["short", LONG])  # 100 tokens by the tokenizer: not over the limit of 512
    assert not isinstance(info.value, lite.InputTooLongError)
    assert server.paths == ["/v1/embeddings", "/v1/models", "/tokenize"]


def test_a_refusal_whose_inputs_cannot_be_counted_is_the_servers_error(server, model):
    server.script(fs.respond_json(500, TOO_LARGE), BPE_MODEL,
                  fs.respond_json(404, {"error": {"message": "File Not Found", "type": "not_found_error"}}))
    with pytest.raises(lite.ServerError, match="too large to process"):
        model.embed(["a", LONG])


def test_a_context_refusal_names_the_input_with_the_slots_context(server, model):
    server.script(fs.respond_json(400, OVERFLOW), BPE_MODEL, tokens(3001))
    with pytest.raises(lite.InputTooLongError, match="a slot's context") as info:
        model.embed(["a", "y" * 3000])
    assert (info.value.index, info.value.n_tokens, info.value.limit) == (1, 3001, 2048)


def test_many_inputs_are_split_by_answer_size_and_come_back_in_order(server):
    server.default = embeddings_echo(width=64)
    inputs = ["a" * (n % 7 + 1) for n in range(1200)]
    with LlamaCppModel(server.url, timeout=(2, 5)) as model:
        result = model.embed(inputs)
    assert [vector[0] for vector in result.vectors] == [float(len(text)) for text in inputs]
    sizes = [len(request.json()["input"]) for request in server.requests]
    first = inputs_per_request(Limits().json_body // 2, None)  # before the width is known: wide vectors assumed
    assert 1 < first < 512 and sizes == [first, 512, 512, 1200 - first - 1024]  # width 64: 512 per request
    assert result.prompt_tokens == sum(map(len, inputs))
    assert all(request.json()["encoding_format"] == "base64" for request in server.requests)

    server.requests.clear()
    with LlamaCppModel(server.url, timeout=(2, 5), limits=Limits(json_body=64 * 1024)) as model:
        result = model.embed(inputs[:50])
    sizes = [len(request.json()["input"]) for request in server.requests]
    assert sizes[0] == 1 and sum(sizes) == 50 and len(sizes) < 6  # one assumed-wide vector, then the real width
    assert [vector[0] for vector in result.vectors] == [float(len(text)) for text in inputs[:50]]


def test_truncate_sends_the_cut_token_ids(server, model):
    # the LONG text: with specials [1] + 600 x [7] + [2]; without: 600 x [7]
    server.script(BPE_MODEL, fs.respond_json(200, {"tokens": [1, *[7] * 600, 2]}),
                  fs.respond_json(200, {"tokens": [7] * 600}), embeddings_echo())
    result = model.embed(["a", LONG], truncate=True)
    sent = server.requests[-1].json()["input"]
    assert sent == ["a", [1, *[7] * 510, 2]] and len(result.vectors) == 2
    assert server.paths == ["/v1/models", "/tokenize", "/tokenize", "/v1/embeddings"]


@pytest.mark.parametrize("body", [
    {"data": [], "usage": {"prompt_tokens": 1}},
    {"data": [{"embedding": "@@@", "index": 0}], "usage": {"prompt_tokens": 1}},
    {"object": "list"},
    ["not", "an", "object"],
])
def test_malformed_embedding_answers_are_stream_errors(server, model, body):
    server.script(fs.respond_json(200, body))
    with pytest.raises(lite.StreamError, match="/v1/embeddings answered"):
        model.embed("a")


def test_embeddings_are_retried_while_the_model_loads(server):
    server.script(fs.respond_json(503, LOADING), fs.respond_json(503, LOADING), embeddings_echo())
    with LlamaCppModel(server.url, timeout=(2, 2), retry=FAST) as model:
        assert len(model.embed(["a", "b"]).vectors) == 2
    assert server.paths == ["/v1/embeddings"] * 3


def test_a_silent_server_is_a_read_timeout(server):
    server.script(fs.silence())
    with LlamaCppModel(server.url, timeout=(1, 0.3), retry=None) as model:
        started = time.monotonic()
        with pytest.raises(lite.ReadTimeout):
            model.embed("a")
    assert time.monotonic() - started < 2


def test_embed_errors_reach_the_async_twin(server):
    server.script(fs.respond_json(500, TOO_LARGE), BPE_MODEL, tokens(600))

    async def main():
        async with AsyncLlamaCppModel(server.url, timeout=(2, 2), retry=None) as model:
            await model.embed(["a", LONG])

    with pytest.raises(lite.InputTooLongError):
        asyncio.run(asyncio.wait_for(main(), 5))


# -- rerank ----------------------------------------------------------------------------------


def test_rerank_errors(server, model):
    server.script(fs.respond_json(501, {"error": {"code": 501, "message": "This server does not support reranking. "
                                                  "Start it with `--reranking`", "type": "not_supported_error"}}),
                  fs.respond_json(200, {"results": [{"index": 5, "relevance_score": 1.0}]}),
                  fs.respond_json(200, {"results": [{"index": 1, "relevance_score": 2.0},
                                                    {"index": 0, "relevance_score": 3.0}]}))
    with pytest.raises(lite.NotSupportedError, match="--reranking"):
        model.rerank("q", ["a", "b"])
    with pytest.raises(lite.StreamError, match="malformed or repeated result"):
        model.rerank("q", ["a", "b"])
    assert [entry.document for entry in model.rerank("q", ["a", "b"], top_n=1)] == ["a"]
    assert server.requests[-1].json()["top_n"] == 1


# -- raw completion and infill ---------------------------------------------------------------


def test_a_stream_ends_at_its_final_object_without_done(server, model):
    server.script(fs.sse_stream(completion_partial("a"), completion_partial("b"), completion_final(), done=False,
                                end="stall"))
    started = time.monotonic()
    chunks = list(model.stream_complete("hi"))
    assert [chunk.text for chunk in chunks] == ["a", "b", ""] and chunks[-1].final.text == "ab"
    assert time.monotonic() - started < 1.5  # not waiting for [DONE] or the connection's end


def test_progress_events_are_not_chunks(server, model):
    progress = {**completion_partial(""), "tokens": [0],
                "prompt_progress": {"total": 3, "cache": 0, "processed": 3, "time_ms": 1}}
    server.script(fs.sse_stream(progress, completion_partial("a"), completion_final(), done=False))
    assert [chunk.text for chunk in model.stream_complete("hi", return_progress=True)] == ["a", ""]


@pytest.mark.parametrize(("handler", "match"), [
    (fs.sse_stream(completion_partial("a"), done=False), "ended before its final event"),
    (fs.sse_stream(completion_partial("a"), done=False, end="cut"), "broke off"),
    (fs.sse_stream(completion_partial("a"), {"error": {"code": 500, "message": "got exception: Unexpected empty "
                                                       "grammar stack", "type": "server_error"}}, done=False),
     "empty grammar stack"),
    (fs.sse_stream(completion_partial("a"), {"content": 5, "stop": False}, done=False), "without a str 'content'"),
    (fs.sse_stream("null", done=False), "something other than a result object"),
], ids=["no final object", "cut", "error event", "wrong shape", "null event"])
def test_broken_completion_streams_are_stream_errors(server, model, handler, match):
    server.script(handler)
    with pytest.raises(lite.StreamError, match=match):
        list(model.stream_complete("hi"))


def test_whole_answers_of_the_wrong_shape_are_stream_errors(server, model):
    server.script(fs.respond_json(200, [completion_final("a")]), fs.respond_json(200, {"content": "a"}))
    with pytest.raises(lite.StreamError, match="something other than one result object"):
        model.complete("hi")
    with pytest.raises(lite.StreamError, match="stop_type"):
        model.complete("hi")


def test_completion_retries_503_and_times_out_like_chat(server):
    server.script(fs.respond_json(503, LOADING), fs.respond_json(200, completion_final("ok")), fs.silence())
    with LlamaCppModel(server.url, timeout=(1, 0.3), retry=FAST) as model:
        assert model.complete("hi").text == "ok"
        with pytest.raises(lite.ReadTimeout):
            list(model.stream_complete("hi"))
    assert server.paths == ["/completion"] * 3


def test_infill_on_a_model_without_fim_is_not_supported(server, model):
    server.script(fs.respond_json(501, NO_FIM), fs.respond_json(501, NO_FIM))
    with pytest.raises(lite.NotSupportedError, match="prefix token is missing"):
        model.infill("a", "b")
    with pytest.raises(lite.NotSupportedError, match="prefix token is missing"):
        list(model.stream_infill("a", "b"))
    assert server.requests[0].json()["input_prefix"] == "a" and server.requests[1].json()["stream"] is True


def test_closing_or_aborting_a_completion_stream_closes_the_connection(server, model):
    server.script(fs.sse_stream(completion_partial("a"), completion_partial("b"), done=False, end="stall"))
    with model.stream_complete("hi") as chunks:
        assert next(chunks).text == "a"
    assert server.disconnected.wait(2)

    server.disconnected.clear()
    server.script(fs.sse_stream(completion_partial("a"), done=False, end="stall"))
    chunks = model.stream_complete("hi")
    assert next(chunks).text == "a"
    threading.Timer(0.2, chunks.abort).start()
    with pytest.raises(lite.Aborted):
        next(chunks)
    assert server.disconnected.wait(2)


def test_cancelling_an_async_completion_closes_the_connection(server):
    server.script(fs.silence())

    async def main():
        async with AsyncLlamaCppModel(server.url, timeout=(2, 5)) as model:
            task = asyncio.create_task(model.complete("hi"))  # the server stays silent: only the cancel ends it
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic()

    cancelled_at = asyncio.run(asyncio.wait_for(main(), 5))
    assert server.disconnected.wait(2) and time.monotonic() - cancelled_at < 1.5


# -- tokens ----------------------------------------------------------------------------------


def test_an_unknown_token_id_is_named_only_when_the_vocabulary_says_so(server, model):
    models = {"object": "list", "data": [{"id": "m", "meta": {"n_vocab": 285}}]}
    server.script(fs.respond_json(500, BAD_ID), fs.respond_json(200, models),
                  fs.respond_json(500, BAD_ID), fs.respond_json(200, models),
                  fs.respond_json(500, BAD_ID), fs.respond_json(500, {"error": {"message": "x", "type": "server_error"}}))
    with pytest.raises(lite.InvalidRequestError, match=r"tokens\[1\] = 99999 is not a token id .* 285 tokens"):
        model.detokenize([1, 99999])
    with pytest.raises(lite.ServerError, match="_M_range_check"):  # every id is in the vocabulary: not explained
        model.detokenize([1, 2])
    with pytest.raises(lite.ServerError, match="_M_range_check"):  # the vocabulary is unknown
        model.detokenize([1, 99999])


def test_malformed_token_answers_are_stream_errors(server, model):
    server.script(fs.respond_json(200, {"tokens": ["a"]}), fs.respond_json(200, {"tokens": [{"id": 1}]}),
                  fs.respond_json(200, {"content": 5}))
    with pytest.raises(lite.StreamError):
        model.tokenize("a")
    with pytest.raises(lite.StreamError):
        model.tokenize("a", with_pieces=True)
    with pytest.raises(lite.StreamError):
        model.detokenize([1])
