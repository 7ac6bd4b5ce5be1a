"""Pure token shapes (`_tokens`): ids checked before sending, `/tokenize` pieces, probabilities."""

from __future__ import annotations

import math

import pytest

from llamacpp_lite import InvalidRequestError, StreamError, Token, TokenProbability
from llamacpp_lite._result import ChatResult
from llamacpp_lite._tokens import check_token_ids, parse_pieces, parse_probabilities, parse_token_ids

ENTRY = {"id": 71, "token": "G", "bytes": [71], "logprob": -3.09,
         "top_logprobs": [{"id": 103, "token": "g", "bytes": [103], "logprob": -2.32},
                          {"id": 70, "token": "F", "bytes": [70], "logprob": -2.38}]}


@pytest.mark.parametrize("tokens", [[1, 2, 3], (0,), []])
def test_token_ids_are_copied_into_a_list(tokens):
    checked = check_token_ids(tokens, "tokens")
    assert checked == list(tokens) and checked is not tokens


@pytest.mark.parametrize(("tokens", "message"), [
    ("abc", "must be a list of token ids"),
    ([1, -1], "element 1 must be a token id"),
    ([True], "element 0 must be a token id"),
    ([1.0], "element 0 must be a token id"),
    ([[1]], "element 0 must be a token id"),
])
def test_bad_token_ids_are_refused(tokens, message):
    with pytest.raises(InvalidRequestError, match=message):
        check_token_ids(tokens, "tokens")


def test_an_empty_list_is_refused_where_it_must_not_be():
    with pytest.raises(InvalidRequestError, match="prompt is empty"):
        check_token_ids([], "prompt", allow_empty=False)


def test_token_ids_of_an_answer_must_be_ints():
    assert parse_token_ids([1, 2], "/tokenize") == [1, 2]
    for bad in ([1, "2"], [True], "12", None):
        with pytest.raises(StreamError):
            parse_token_ids(bad, "/tokenize")


def test_pieces_that_are_not_utf8_on_their_own_come_as_bytes():
    # the exact answer of b11434 to {"content": "a€ <|im_end|>", "with_pieces": true}
    answer = [{"id": 97, "piece": "a"}, {"id": 226, "piece": [226]}, {"id": 130, "piece": [130]},
              {"id": 172, "piece": [172]}, {"id": 32, "piece": " "}, {"id": 278, "piece": "<|im_end|>"}]
    pieces = parse_pieces(answer, "/tokenize")
    assert pieces[0] == Token(id=97, text="a", data=b"a")
    assert pieces[1] == Token(id=226, text="\ufffd", data=b"\xe2")
    assert b"".join(piece.data for piece in pieces).decode() == "a€ <|im_end|>"


@pytest.mark.parametrize("entry", [{"id": 1}, {"id": "1", "piece": "a"}, {"id": 1, "piece": [256]},
                                   {"id": 1, "piece": 5}, "a"])
def test_malformed_pieces_are_stream_errors(entry):
    with pytest.raises(StreamError, match="a piece of the wrong shape"):
        parse_pieces([entry], "/tokenize")


def test_probabilities_with_alternatives():
    (first,) = parse_probabilities([ENTRY], "here")
    assert (first.id, first.token, first.logprob, first.data) == (71, "G", -3.09, b"G")
    assert [(alt.token, alt.logprob, alt.top) for alt in first.top] == [("g", -2.32, ()), ("F", -2.38, ())]
    assert first.prob == pytest.approx(math.exp(-3.09))


def test_post_sampling_probabilities_become_logprobs():
    entry = {"id": 5, "token": "x", "bytes": [120], "prob": 0.5,
             "top_probs": [{"id": 5, "token": "x", "bytes": [120], "prob": 0.5},
                           {"id": 6, "token": "y", "bytes": [121], "prob": 0.0}]}
    (first,) = parse_probabilities([entry], "here")
    assert first.logprob == pytest.approx(math.log(0.5)) and first.prob == pytest.approx(0.5)
    assert first.top[1].logprob == -math.inf and first.top[1].prob == 0.0


def test_bytes_are_exact_when_the_token_text_is_cut():
    (entry,) = parse_probabilities([{"id": 226, "token": "", "bytes": [226], "logprob": -1.0}], "here")
    assert entry.token == "" and entry.data == b"\xe2"
    (plain,) = parse_probabilities([{"id": 97, "token": "a", "logprob": -1.0}], "here")
    assert plain.data == b"a"  # no bytes sent: the text's


@pytest.mark.parametrize("entries", [
    "abc",
    [{"id": 1, "token": "a"}],
    [{"id": 1, "token": "a", "logprob": "low"}],
    [{"id": 1, "token": "a", "prob": 1.5}],
    [{"token": "a", "logprob": -1.0}],
    [{"id": 1, "token": "a", "logprob": -1.0, "bytes": "a"}],
    [{"id": 1, "token": "a", "logprob": -1.0, "top_logprobs": {"id": 2}}],
    [{"id": 1, "token": "a", "logprob": -1.0, "top_logprobs": [{"id": 2, "token": "b"}]}],
])
def test_malformed_probabilities_are_stream_errors(entries):
    with pytest.raises(StreamError, match="here answered with"):
        parse_probabilities(entries, "here")


def test_chat_result_has_a_typed_view_of_its_logprobs():
    def result(logprobs):
        return ChatResult(text="G", reasoning="", tool_uses=(), stop_reason="end_turn", usage={}, metrics={},
                          timings={}, logprobs=logprobs)

    assert result(None).probabilities is None
    (first,) = result([ENTRY]).probabilities
    assert isinstance(first, TokenProbability) and first.token == "G" and len(first.top) == 2
    with pytest.raises(StreamError):
        result([{"id": 1}]).probabilities
