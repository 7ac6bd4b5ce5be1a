"""The SSE reader's shortcut for llama-server's framing gives exactly what sseclient alone gives.

`_sse.iter_payloads` splits canonical pieces (`data: <json>\\n\\n` only) itself and hands
everything else to sseclient. The reference below is the reader before the shortcut: every
byte through sseclient. Generated bodies mix canonical events with what the shortcut must not
take (comments, other fields, `event: error`, multi-line data, `\\r\\n` and `\\r` line ends,
blank-line runs, bytes that are not UTF-8, a byte-order mark, a cut-off end), are split at
random places, and must give the same payloads, then the same error (type, message and
attributes) or the same end, with the same bytes read.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator, Optional

import pytest
import sseclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamacpp_lite import LlamaCppError, StreamError
from llamacpp_lite._errors import preview, tool_call_parse_error
from llamacpp_lite._json import decode_json
from llamacpp_lite._sse import DONE, EventSizeGuard, iter_payloads, split_events

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the reference: sseclient for every byte, json.loads for every payload (the reader as it was) --
# (A copy on purpose, error mapping included: the oracle must not share code with what it checks.)


def reference_decode(text: str, status_code: int) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise StreamError("a stream event is not JSON", payload=text, status_code=status_code) from None
    except RecursionError:
        raise StreamError("a stream event nests too deeply to decode", payload=text, status_code=status_code) from None


def reference_payloads(pieces: Iterable[bytes], *, event_limit: int, last: Optional[Callable[[Any], bool]] = None,
                       status_code: int = 200) -> Iterator[Any]:
    try:
        guard = EventSizeGuard(pieces, event_limit)
        for event in sseclient.SSEClient(iter(guard)).events():
            guard.event_seen()
            data = event.data
            if last is None and data == DONE:
                return
            payload = reference_decode(data, status_code)
            if event.event == "error" or (type(payload) is dict and "error" in payload):
                error = payload.get("error", payload) if type(payload) is dict else payload
                message = error.get("message") if isinstance(error, dict) else None
                if isinstance(error, dict):
                    code = error.get("code")
                    parse_error = tool_call_parse_error(code if type(code) is int else 500, error)
                    if parse_error is not None:
                        raise parse_error
                raise StreamError(
                    "the server reported an error during the stream: "
                    + (message if isinstance(message, str) else preview(error)),
                    status_code=status_code,
                    error=error if isinstance(error, dict) else None,
                )
            yield payload
            if last is not None and last(payload):
                return
        raise StreamError("the stream ended before [DONE]" if last is None else "the stream ended before its final event",
                          status_code=status_code)
    except UnicodeDecodeError as exc:
        around = exc.object[max(0, exc.start - 60):exc.end + 60]
        raise StreamError(f"the stream is not valid UTF-8: {exc}", payload=repr(around), status_code=status_code) from None


def outcome(reader: Callable[..., Iterator[Any]], pieces: list, **kwargs: Any) -> tuple:
    """Everything observable: the payloads, how the stream ended, and how many pieces were read."""
    read = [0]

    def counted() -> Iterator[bytes]:
        for piece in pieces:
            read[0] += 1
            yield piece

    payloads: list = []
    try:
        for payload in reader(counted(), **kwargs):
            payloads.append(payload)
        end: Any = "end"
    except LlamaCppError as exc:
        end = (type(exc).__name__, str(exc), sorted(vars(exc).items(), key=lambda item: item[0]))
    return payloads, end, read[0]


# -- generated bodies -------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
json_payloads = st.one_of(
    st.builds(lambda t: json.dumps({"choices": [{"delta": {"content": t}}]}, ensure_ascii=False), texts),
    st.builds(lambda t: json.dumps({"error": {"message": t, "code": 500}}, ensure_ascii=False), texts),
    st.builds(lambda t: json.dumps({"error": {"message": "Failed to parse input at pos 3: " + t, "code": 500,
                                              "type": "server_error"}}, ensure_ascii=False), texts),
    st.builds(lambda t: json.dumps({"stop": True, "content": t}, ensure_ascii=False), texts),
    st.sampled_from(["1", "[1, 2]", '"x"', "null", " {}", "{} ", "{}\t", "1 2", "{", "", " ", "[DONE]", "x: y",
                     "[" * 3000 + "]" * 3000, '"\\ud800"', "\ufeff{}"]),
)
line_ends = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r"])


@st.composite
def sse_events(draw: Any, only_lf: bool) -> bytes:
    """One event or one non-event stretch, mostly canonical."""
    kind = draw(st.sampled_from(["canonical"] * 5 + ["nospace", "comment", "comment", "field", "error-event",
                                                     "multiline", "blank", "bad-utf8", "empty-data", "data-only"]))
    end = "\n" if only_lf else draw(line_ends)
    if kind == "canonical":
        return b"data: " + draw(json_payloads).encode() + b"\n\n"
    if kind == "nospace":
        return b"data:" + draw(json_payloads).encode() + (end * 2).encode()
    if kind == "comment":
        return (draw(st.sampled_from([":", ": ping", ":data: 1"])) + end * draw(st.integers(1, 2))).encode()
    if kind == "field":
        field = draw(st.sampled_from(["id: 7", "retry: 10", "event: message", "foo: bar", "data", "event"]))
        return (field + end + "data: " + draw(json_payloads) + end * 2).encode()
    if kind == "error-event":
        return ("event: error" + end + "data: " + draw(json_payloads) + end * 2).encode()
    if kind == "multiline":
        return ("data: {" + end + 'data: "a": 1}' + end * 2).encode()
    if kind == "blank":
        return (end * draw(st.integers(1, 4))).encode()
    if kind == "bad-utf8":
        return b"data: {\"a\": \"" + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"])) + b"\"}" + b"\n\n"
    if kind == "empty-data":
        return (draw(st.sampled_from(["data: ", "data:", "data:  "])) + end * 2).encode()
    return ("data: " + draw(json_payloads) + end).encode()  # an event that the next one continues


@st.composite
def sse_bodies(draw: Any) -> bytes:
    body = b"".join(draw(st.lists(sse_events(draw(st.integers(0, 3)) > 0), max_size=16)))
    if draw(st.booleans()):
        body += b"data: [DONE]\n\n"
    if draw(st.integers(0, 4)) == 0:
        body = b"\xef\xbb\xbf" + body
    if body and draw(st.integers(0, 4)) == 0:
        body = body[:draw(st.integers(0, len(body) - 1))]  # cut off
    return body


@st.composite
def splits(draw: Any, body: bytes) -> list:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=10))) if len(body) > 1 else []
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]


@FUZZ
@given(st.data(), sse_bodies(), st.sampled_from([1 << 20, 200, 60]), st.booleans())
def test_the_shortcut_gives_what_sseclient_gives(data, body, limit, native):
    pieces = data.draw(splits(body))
    last = (lambda payload: type(payload) is dict and payload.get("stop") is True) if native else None
    expected = outcome(reference_payloads, pieces, event_limit=limit, last=last)
    assert outcome(iter_payloads, pieces, event_limit=limit, last=last) == expected


json_texts = st.one_of(
    json_payloads,
    st.builds(lambda value: json.dumps(value, ensure_ascii=False), st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=8)),
    st.text(max_size=12),
)


@FUZZ
@given(json_texts, st.sampled_from(["", "data: ", " ", "data:"]), st.sampled_from(["", " ", "\n", "x"]))
def test_decoding_in_place_gives_what_json_loads_gives(text, prefix, suffix):
    line = prefix + text + suffix
    try:
        expected: Any = ("value", json.loads(line[len(prefix):]))
    except ValueError:
        expected = ("error", "not JSON")
    except RecursionError:
        expected = ("error", "nests too deeply")
    try:
        got: Any = ("value", decode_json(line, "it", start=len(prefix)))
    except StreamError as exc:
        got = ("error", "not JSON" if "is not JSON" in str(exc) else "nests too deeply")
        assert exc.payload == line[len(prefix):]
    if expected[0] == "value" and expected[1] != expected[1]:  # NaN
        assert got[0] == "value" and got[1] != got[1]
    else:
        assert repr(got) == repr(expected)


# -- the shortcut is taken where it should be ------------------------------------------------------


def test_canonical_pieces_are_split_without_sseclient():
    pieces = [b'data: {"a": 1}\n\ndata: {"a"', b': 2}\n\ndata: [DONE]\n\n']
    batches = [list(batch) for batch in split_events(pieces)]
    assert batches == [['data: {"a": 1}'], ['data: {"a": 2}', "data: [DONE]"]]


def test_a_comment_goes_to_sseclient_for_its_piece_only():
    pieces = [b'data: 1\n\n:\n\ndata: 2\n\n', b"data: 3\n\n"]
    batches = [list(batch) for batch in split_events(pieces)]
    assert [[getattr(event, "data", event) for event in batch] for batch in batches] == [["1", "2"], ["data: 3"]]
    assert isinstance(batches[0][0], sseclient.Event)


def test_after_a_carriage_return_sseclient_reads_the_rest():
    pieces = [b"data: 1\n\n", b"data: 2\r\n\r\n", b"data: 3\n\n"]
    batches = [list(batch) for batch in split_events(pieces)]
    assert batches[0] == ["data: 1"]
    assert [event.data for event in batches[1]] == ["2", "3"] and len(batches) == 2


@pytest.mark.parametrize("body,match", [
    (b"data: {\"a\": \"\xff\"}\n\n", "UTF-8"),
    (b"data: {\n\n", "not JSON"),
    (b"data: {\"error\": {\"message\": \"boom\"}}\n\n", "boom"),
    (b"data: 1\n\n", "ended before"),
])
def test_errors_on_the_shortcut(body, match):
    with pytest.raises(StreamError, match=match):
        list(iter_payloads([body], event_limit=1 << 20))
