"""Embeddings, rerank, raw completion, infill and tokens against real llama-servers on the tiny model.

The tiny model writes gibberish by design: these tests check protocol, structure, constraints and
counts, never meaning.
"""

from __future__ import annotations

import asyncio
import math

import pytest

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, Limits, LlamaCppModel
from llamacpp_lite.testing.tiny_model import N_EMBD

pytestmark = pytest.mark.real_server

LONG_TEXT = "x" * 600  # 600 tokens on the tiny model: over the default -ub of 512
TEXTS = [f"text number {n}" for n in range(500)]
PROMPT = "<|im_start|>assistant\n"  # the tiny model writes text after this; greedy, it ends at once elsewhere


@pytest.fixture
def embedder(embedding_server):
    with LlamaCppModel(embedding_server.base_url, timeout=(5, 60)) as model:
        yield model


@pytest.fixture
def fim_model(fim_server):
    with LlamaCppModel(fim_server.base_url, timeout=(5, 60)) as model:
        yield model


def close(a: list[float], b: list[float]) -> bool:
    """The same vector up to float noise (the server's batching changes the last bits)."""
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-6


# -- embeddings --------------------------------------------------------------------------------


def test_vectors_have_the_models_width_and_the_tokens_are_counted(embedder):
    result = embedder.embed(["hello", "world there"])
    assert [len(vector) for vector in result.vectors] == [N_EMBD, N_EMBD]
    expected = sum(len(embedder.tokenize(text, add_special=True)) for text in ("hello", "world there"))
    assert result.prompt_tokens == expected
    assert all(math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-5) for vector in result.vectors)  # L2 default
    assert not close(*result.vectors)


def test_five_hundred_inputs_in_one_call_keep_their_order(embedder):
    result = embedder.embed(TEXTS)
    assert len(result.vectors) == 500
    for index in (0, 137, 499):
        assert close(embedder.embed(TEXTS[index]).vectors[0], result.vectors[index])


def test_the_same_text_gives_the_same_vector_alone_and_in_a_batch(embedder):
    alone = embedder.embed("the same text").vectors[0]
    batch = embedder.embed(["other", "the same text", "more"] * 3).vectors
    assert all(close(alone, vector) for vector in batch[1::3])
    assert not close(alone, batch[0])


def test_many_requests_when_answers_would_be_too_big_same_vectors(embedding_server, embedder):
    # 40 KiB per answer at most: the first request assumes wide vectors (1 input), the next ones fit 20
    with LlamaCppModel(embedding_server.base_url, limits=Limits(json_body=40 * 1024)) as small:
        split = small.embed(TEXTS[:60])
    whole = embedder.embed(TEXTS[:60])
    assert all(close(a, b) for a, b in zip(split.vectors, whole.vectors)) and len(split.vectors) == 60
    assert split.prompt_tokens == whole.prompt_tokens


def test_token_id_inputs(embedder):
    ids = embedder.tokenize("hello there", add_special=True)
    result = embedder.embed([ids, "hello there"])
    assert close(*result.vectors)
    assert close(embedder.embed(ids).vectors[0], result.vectors[0])  # a bare id list is one input


def test_a_too_long_input_is_named(embedding_server, embedder):
    with pytest.raises(lite.InputTooLongError) as info:
        embedder.embed(["a", "b", LONG_TEXT, "c"])
    error = info.value
    assert (error.index, error.n_tokens, error.limit) == (2, len(embedder.tokenize(LONG_TEXT, add_special=True)), 512)
    assert isinstance(error.__cause__, lite.ServerError) and "too large to process" in error.__cause__.message
    # in a later request of the same call, the index still counts from the first input
    with LlamaCppModel(embedding_server.base_url, limits=Limits(json_body=40 * 1024)) as small:
        with pytest.raises(lite.InputTooLongError) as info:
            small.embed([*TEXTS[:30], LONG_TEXT])
    assert info.value.index == 30


def test_truncate_embeds_exactly_the_first_tokens(embedder):
    result = embedder.embed(["a", LONG_TEXT], truncate=True)
    first_512 = embedder.tokenize(LONG_TEXT, add_special=True)[:512]
    assert result.prompt_tokens == 1 + 512
    assert close(result.vectors[1], embedder.embed([first_512]).vectors[0])
    assert close(result.vectors[0], embedder.embed("a").vectors[0])  # short inputs are sent as they are
    # a smaller limit cuts there, token-id inputs too
    text = "the quick brown fox jumps over the lazy dog"
    cut = embedder.embed([text, embedder.tokenize(text)], truncate=True, batch_limit=10)
    first_10 = embedder.tokenize(text, add_special=True)[:10]
    assert cut.prompt_tokens == 20 and all(close(vector, embedder.embed([first_10]).vectors[0])
                                           for vector in cut.vectors)


def test_a_server_without_embeddings_says_so(real_model):
    with pytest.raises(lite.NotSupportedError, match="--embeddings"):
        real_model.embed("hello")


def test_async_embed(embedding_server):
    async def main():
        async with AsyncLlamaCppModel(embedding_server.base_url) as model:
            return await model.embed(["a", "b"])

    assert len(asyncio.run(main()).vectors) == 2


# -- rerank ------------------------------------------------------------------------------------


def test_rerank_best_first_with_the_documents(rerank_server):
    documents = ["b", "cc", "a", "b"]
    with LlamaCppModel(rerank_server.base_url) as model:
        ranked = model.rerank("a", documents)
        top = model.rerank("a", documents, top_n=2)
    assert sorted(entry.index for entry in ranked) == [0, 1, 2, 3]
    assert all(entry.document == documents[entry.index] for entry in ranked)
    keys = [(-entry.score, entry.index) for entry in ranked]
    assert keys == sorted(keys)  # best first, ties in document order
    # the tiny model's rank head is not stable from call to call: check the shape of top_n only
    assert len(top) == 2 and top[0].score >= top[1].score and all(e.document == documents[e.index] for e in top)


def test_rerank_on_a_server_without_reranking_says_so(embedder):
    with pytest.raises(lite.NotSupportedError, match="--reranking"):
        embedder.rerank("a", ["b"])


# -- raw completion ----------------------------------------------------------------------------


def test_a_grammar_constrains_the_text(real_model):
    texts = {real_model.complete("Answer:", grammar='root ::= "yes" | "no"', seed=seed, temperature=1.5).text
             for seed in range(6)}
    assert texts <= {"yes", "no"} and texts


def test_json_schema_constrains_the_text(real_model):
    result = real_model.complete("Pick:", json_schema={"enum": ["red", "green"]}, seed=1, max_tokens=20)
    assert result.text in ('"red"', '"green"')


def test_a_token_id_prompt_is_the_same_prompt(real_model):
    by_text = real_model.complete(PROMPT, max_tokens=12, temperature=0)
    by_ids = real_model.complete(real_model.tokenize(PROMPT, add_special=True), max_tokens=12, temperature=0)
    assert by_ids.text == by_text.text and by_text.text
    assert by_ids.prompt_tokens == by_text.prompt_tokens == len(real_model.tokenize(PROMPT, add_special=True))


def test_streamed_text_equals_the_whole_text(real_model):
    whole = real_model.complete(PROMPT, max_tokens=40, temperature=0, seed=3)
    chunks = list(real_model.stream_complete(PROMPT, max_tokens=40, temperature=0, seed=3))
    final = chunks[-1].final
    assert "".join(chunk.text for chunk in chunks) == final.text == whole.text and whole.text
    assert all(chunk.final is None for chunk in chunks[:-1])
    assert (final.stop_reason, final.completion_tokens, final.prompt_tokens) == \
        (whole.stop_reason, whole.completion_tokens, whole.prompt_tokens)


def test_max_tokens_is_n_predict_and_the_call_wins(real_server):
    with LlamaCppModel(real_server.base_url, params={"n_predict": 3, "ignore_eos": True}) as model:
        assert model.complete("hi").completion_tokens == 3
        result = model.complete("hi", max_tokens=7)
    assert (result.completion_tokens, result.stop_reason) == (7, "max_tokens")
    assert result.timings["predicted_n"] == 7 and result.timings["predicted_per_second"] > 0


def test_a_stop_string_gives_stop_sequence(real_model):
    text = real_model.complete("hi", max_tokens=20, temperature=0, ignore_eos=True).text
    stop = text[3:5]
    result = real_model.complete("hi", max_tokens=20, temperature=0, ignore_eos=True, stop=[stop])
    assert (result.stop_reason, result.stopping_word, result.text) == ("stop_sequence", stop, text[:text.index(stop)])


def test_probabilities_when_asked(real_model):
    result = real_model.complete("hi", max_tokens=4, ignore_eos=True, n_probs=3)
    assert len(result.probabilities) == 4 and all(len(p.top) == 3 for p in result.probabilities)
    assert all(p.logprob <= 0 and 0 <= p.prob <= 1 for p in result.probabilities)
    chat_style = real_model.complete("hi", max_tokens=2, ignore_eos=True, logprobs=True, top_logprobs=2)
    assert [len(p.top) for p in chat_style.probabilities] == [2, 2]
    chunks = list(real_model.stream_complete("hi", max_tokens=3, ignore_eos=True, n_probs=2))
    assert [len(chunk.probabilities) for chunk in chunks] == [1, 1, 1, 0]
    assert len(chunks[-1].final.probabilities) == 3
    assert real_model.complete("hi", max_tokens=2).probabilities is None


def test_chat_logprobs_have_a_typed_view(real_model):
    result = real_model.chat("hi", max_tokens=3, ignore_eos=True, logprobs=True, top_logprobs=2)
    assert [p.token for p in result.probabilities] == [entry["token"] for entry in result.logprobs]
    assert all(len(p.top) == 2 and p.top[0].logprob >= p.top[1].logprob for p in result.probabilities)
    assert b"".join(p.data for p in result.probabilities).decode() == result.text


def test_completion_errors_are_the_chat_errors(real_model, small_ctx_server):
    with pytest.raises(lite.BadRequestError, match="failed to parse grammar"):
        real_model.complete("hi", grammar="root ::= (")
    with pytest.raises(lite.BadRequestError, match="failed to parse grammar"):
        list(real_model.stream_complete("hi", grammar="root ::= ("))
    with LlamaCppModel(small_ctx_server.base_url) as model, pytest.raises(lite.ContextWindowOverflowException):
        model.complete("word " * 400)
    # a grammar that is complete after "a" while EOS is banned fails after the first token, in the stream
    chunks = []
    with pytest.raises(lite.StreamError, match="empty grammar stack") as info:
        for chunk in real_model.stream_complete("hi", grammar='root ::= "a"', ignore_eos=True, max_tokens=5):
            chunks.append(chunk)
    assert [chunk.text for chunk in chunks] == ["a"] and info.value.error["type"] == "server_error"


def test_leaving_a_completion_stream_early_frees_the_slot(one_slot_server):
    with LlamaCppModel(one_slot_server.base_url, timeout=(5, 30)) as model:
        with model.stream_complete("go", max_tokens=5000, ignore_eos=True) as chunks:
            for count, _ in enumerate(chunks):
                if count == 5:
                    break
        assert model.complete("hi", max_tokens=4, ignore_eos=True).completion_tokens == 4


def test_async_stream_complete_gives_the_same_text(real_server, real_model):
    async def main():
        async with AsyncLlamaCppModel(real_server.base_url) as model:
            return [chunk async for chunk in model.stream_complete(PROMPT, max_tokens=20, temperature=0)]

    chunks = asyncio.run(main())
    assert chunks[-1].final.text == real_model.complete(PROMPT, max_tokens=20, temperature=0).text != ""


# -- infill ------------------------------------------------------------------------------------


def test_infill_fills_the_middle_and_uses_every_input(fim_model):
    base = fim_model.infill("def add(a, b):\n    ", "\n\nprint(add(1, 2))", max_tokens=8, temperature=0)
    assert base.text and base.completion_tokens <= 8
    with_prompt = fim_model.infill("def add(a, b):\n    ", "\n\nprint(add(1, 2))", prompt="return", max_tokens=8)
    extra = [{"filename": "util.py", "text": "x = 1\n"}]
    with_extra = fim_model.infill("def add(a, b):\n    ", "\n\nprint(add(1, 2))", input_extra=extra, max_tokens=8)
    assert with_prompt.prompt_tokens == base.prompt_tokens + len(fim_model.tokenize("return"))
    assert with_extra.prompt_tokens > base.prompt_tokens


def test_streamed_infill_equals_infill(fim_model):
    whole = fim_model.infill("a = ", "\n", max_tokens=12, temperature=0)
    chunks = list(fim_model.stream_infill("a = ", "\n", max_tokens=12, temperature=0))
    assert "".join(chunk.text for chunk in chunks) == chunks[-1].final.text == whole.text


def test_infill_on_a_model_without_fim_tokens_is_not_supported(real_model):
    with pytest.raises(lite.NotSupportedError, match="Infill is not supported by this model") as info:
        real_model.infill("a", "b")
    assert info.value.status_code == 501
    with pytest.raises(lite.NotSupportedError, match="Infill is not supported"):
        list(real_model.stream_infill("a", "b"))


# -- tokens ------------------------------------------------------------------------------------


def test_tokenize_with_pieces_and_detokenize(real_model):
    text = "a€ <|im_end|>"
    pieces = real_model.tokenize(text, with_pieces=True)
    assert [piece.id for piece in pieces] == real_model.tokenize(text)
    assert b"".join(piece.data for piece in pieces).decode() == text
    assert pieces[-1].text == "<|im_end|>"  # special tokens are parsed
    assert real_model.detokenize(real_model.tokenize(text)) == text
    assert real_model.detokenize([]) == ""


def test_an_unknown_token_id_is_named(real_model):
    with pytest.raises(lite.InvalidRequestError, match=r"tokens\[1\] = 99999 is not a token id") as info:
        real_model.detokenize([97, 99999])
    assert isinstance(info.value.__cause__, lite.ServerError)
    with pytest.raises(lite.InvalidRequestError, match="must be a token id"):
        real_model.detokenize([-1])
