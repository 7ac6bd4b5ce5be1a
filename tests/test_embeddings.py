"""Pure embeddings and reranking (`_embeddings`): inputs, requests, answers, batch sizes, truncation."""

from __future__ import annotations

import array
import base64
import sys

import pytest

from llamacpp_lite import Embeddings, InputTooLongError, InvalidRequestError, LlamaCppModel, Ranked, StreamError
from llamacpp_lite import _embeddings as emb


def b64(*numbers: float) -> str:
    values = array.array("f", numbers)
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def answer(*vectors, indexes=None, tokens=7) -> dict:
    indexes = indexes if indexes is not None else range(len(vectors))
    return {"model": "m", "object": "list", "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"embedding": vector, "index": index, "object": "embedding"}
                     for vector, index in zip(vectors, indexes)]}


# -- inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("hello", ["hello"]),
    (["a", "b"], ["a", "b"]),
    (("a",), ["a"]),
    ([1, 2, 3], [[1, 2, 3]]),  # one token-id input
    ([[1, 2], [3]], [[1, 2], [3]]),
    (["a", (4, 5)], ["a", [4, 5]]),
])
def test_input_forms(value, expected):
    assert emb.to_inputs(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("", "input 0 is an empty string"),
    ([], "input is empty: nothing to embed"),
    (["a", ""], "input 1 is an empty string"),
    (["a", []], "input 1 is empty"),
    ([1, "a"], "input 0 must be a string or a list of token ids"),
    ([["a"]], "input 0: element 0 must be a token id"),
    ([[1, -2]], "input 0: element 1 must be a token id"),
    (b"bytes", "input must be a string"),
    (None, "input must be a string"),
    ({"a": 1}, "input must be a string"),
])
def test_bad_inputs_are_refused_before_sending(value, message):
    with pytest.raises(InvalidRequestError, match=message):
        emb.to_inputs(value)


def test_a_too_long_token_id_input_is_refused_before_sending():
    with pytest.raises(InputTooLongError) as info:
        emb.check_input_lengths(["a" * 5000, [1] * 10, [1] * 11], 10)  # texts are not counted here
    assert (info.value.index, info.value.n_tokens, info.value.limit) == (2, 11, 10)
    assert "input 2 has 11 tokens, more than the 10" in str(info.value) and "truncate=True" in str(info.value)
    assert isinstance(info.value, InvalidRequestError)


def test_embed_refuses_empty_and_too_long_token_input_without_a_server():
    model = LlamaCppModel("http://127.0.0.1:9", retry=None)  # nothing listens: nothing may be sent
    with pytest.raises(InvalidRequestError, match="nothing to embed"):
        model.embed([])
    with pytest.raises(InputTooLongError, match="input 1 has 513 tokens"):
        model.embed([[1], [1] * 513])
    with pytest.raises(InputTooLongError, match="more than the 8 "):
        model.embed([[1] * 9], batch_limit=8)
    with pytest.raises(InvalidRequestError, match="batch_limit must be a positive int"):
        model.embed("a", batch_limit=0)
    with pytest.raises(InvalidRequestError, match="cannot be set through params of embed"):
        model.embed("a", encoding_format="float")


def test_may_exceed_is_sure_only_for_short_texts_of_bounded_tokenizers():
    bpe = emb.tokens_per_byte({"vocab_type": 2, "n_vocab": 285})
    wpm = emb.tokens_per_byte({"vocab_type": 3})
    assert (bpe, wpm) == (1, 2)
    assert not emb.may_exceed("a" * 100, 512, bpe) and not emb.may_exceed("a" * 100, 512, wpm)
    assert emb.may_exceed("a" * 500, 512, bpe)  # 500 bytes could be more than 512 tokens with specials
    assert emb.may_exceed("€" * 170, 512, bpe)  # 510 bytes
    assert emb.may_exceed("a" * 300, 512, wpm)  # WordPiece: up to 2 tokens per byte
    for meta in ({"vocab_type": 4}, {"vocab_type": 6}, {"vocab_type": "2"}, {}, None):  # unigram, others, unknown
        assert emb.tokens_per_byte(meta) is None and emb.may_exceed("a", 512, emb.tokens_per_byte(meta))


# -- truncation --------------------------------------------------------------------------------


def test_truncation_keeps_the_special_tokens_around_the_text():
    full = [101, 1, 2, 3, 4, 5, 102]  # [CLS] text [SEP]
    assert emb.truncate_tokens(full, [1, 2, 3, 4, 5], 4) == [101, 1, 2, 102]
    assert emb.truncate_tokens([9, 1, 2, 3], [1, 2, 3], 2) == [9, 1]  # BOS only
    assert emb.truncate_tokens([1, 2, 3], [1, 2, 3], 2) == [1, 2]  # no specials
    assert emb.truncate_tokens(full, [1, 2, 3, 4, 5], 7) is full  # fits: unchanged


def test_truncation_without_recognisable_specials_keeps_the_first_tokens():
    assert emb.truncate_tokens([7, 8, 9, 10], [1, 2], 3) == [7, 8, 9]
    assert emb.truncate_tokens([101, 1, 2, 102], [1, 2], 2) == [101, 1]  # no room for text between specials


# -- batch sizes -----------------------------------------------------------------------------


def test_inputs_per_request_keeps_each_answer_within_the_budget():
    budget = 8 * 1024 * 1024
    first = emb.inputs_per_request(budget, None)
    assert 1 <= first < emb.MAX_INPUTS_PER_REQUEST
    assert first * (len(b64(*[0.0] * emb.ASSUMED_MAX_WIDTH)) + 100) <= budget
    assert emb.inputs_per_request(budget, 64) == emb.MAX_INPUTS_PER_REQUEST
    assert emb.inputs_per_request(budget, 4096) * (len(b64(*[0.0] * 4096)) + 100) <= budget
    assert emb.inputs_per_request(10, 4096) == 1  # never zero


# -- requests and answers --------------------------------------------------------------------


def test_embeddings_request_asks_for_base64_and_keeps_params():
    body = emb.build_embeddings_request(["a", [1, 2]], model_id="m", params={"embd_normalize": -1})
    assert body == {"embd_normalize": -1, "model": "m", "input": ["a", [1, 2]], "encoding_format": "base64"}


@pytest.mark.parametrize("name", ["input", "content", "encoding_format", "model"])
def test_embeddings_fields_the_client_chooses_are_reserved(name):
    with pytest.raises(InvalidRequestError, match=name):
        emb.build_embeddings_request(["a"], model_id="m", params={name: 1})


def test_base64_and_float_answers_give_the_same_vectors_in_input_order():
    from_b64 = emb.parse_embeddings(answer(b64(0.5, -1.25), b64(2.0, 0.0), indexes=[1, 0]), 2)
    from_floats = emb.parse_embeddings(answer([0.5, -1.25], [2, 0.0], indexes=[1, 0]), 2)
    assert from_b64 == from_floats == Embeddings(vectors=[[2.0, 0.0], [0.5, -1.25]], prompt_tokens=7)


@pytest.mark.parametrize(("body", "message"), [
    ([], "without a data list"),
    ({"data": [{"embedding": [1.0], "index": 0}]}, "without a data list and usage"),
    (answer([1.0]), "1 vectors for 2 inputs"),
    (answer([1.0], [2.0], indexes=[0, 0]), "malformed or repeated"),
    (answer([1.0], [2.0], indexes=[0, 2]), "malformed or repeated"),
    (answer([1.0], ["x"]), "malformed or repeated"),
    (answer([1.0], "not base64!"), "malformed or repeated"),
    (answer([1.0], base64.b64encode(b"abc").decode()), "malformed or repeated"),  # not a float32 multiple
    (answer([1.0], [2.0], tokens="7"), "usage.prompt_tokens"),
])
def test_malformed_embedding_answers_are_stream_errors(body, message):
    with pytest.raises(StreamError, match=message):
        emb.parse_embeddings(body, 2)


def test_rerank_request_and_its_checks():
    body = emb.build_rerank_request("q", ("a", "b"), top_n=1, model_id="m", params={})
    assert body == {"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 1}
    assert "top_n" not in emb.build_rerank_request("q", ["a"], top_n=None, model_id="m", params={})
    cases = [
        (dict(query=1, documents=["a"], top_n=None), "query must be a string"),
        (dict(query="q", documents=[], top_n=None), "non-empty list of strings"),
        (dict(query="q", documents="abc", top_n=None), "non-empty list of strings"),
        (dict(query="q", documents=["a", 2], top_n=None), "document 1 must be a string"),
        (dict(query="q", documents=["a"], top_n=-1), "top_n must be an int >= 0"),
        (dict(query="q", documents=["a"], top_n=True), "top_n must be an int >= 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidRequestError, match=message):
            emb.build_rerank_request(model_id="m", params={}, **kwargs)
    with pytest.raises(InvalidRequestError, match="texts"):  # would switch the server to another answer shape
        emb.build_rerank_request("q", ["a"], top_n=None, model_id="m", params={"texts": ["b"]})


def test_rerank_answer_best_first_ties_in_document_order_and_top_n():
    documents = ["a", "b", "c", "d"]
    results = [{"index": 3, "relevance_score": 1.0}, {"index": 2, "relevance_score": 7.5},
               {"index": 0, "relevance_score": 1.0}, {"index": 1, "relevance_score": -2}]
    ranked = emb.parse_rerank({"results": results}, documents, None)
    assert ranked == [Ranked(2, 7.5, "c"), Ranked(0, 1.0, "a"), Ranked(3, 1.0, "d"), Ranked(1, -2.0, "b")]
    assert emb.parse_rerank({"results": results}, documents, 2) == ranked[:2]
    assert emb.parse_rerank({"results": results}, documents, 0) == []


@pytest.mark.parametrize("body", [
    [],
    {"results": {}},
    {"results": [{"index": 4, "relevance_score": 1.0}]},
    {"results": [{"index": 0, "relevance_score": "high"}]},
    {"results": [{"index": 0, "relevance_score": 1.0}, {"index": 0, "relevance_score": 2.0}]},
    {"results": [{"index": True, "relevance_score": 1.0}]},
])
def test_malformed_rerank_answers_are_stream_errors(body):
    with pytest.raises(StreamError, match="/v1/rerank answered"):
        emb.parse_rerank(body, ["a", "b"], None)
