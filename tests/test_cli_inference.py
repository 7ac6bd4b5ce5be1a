"""`llamacpp-lite embed | rerank | complete | infill`, run as real commands against real llama-servers."""

from __future__ import annotations

import json
import re

import pytest

from llamacpp_lite.testing.tiny_model import N_EMBD
from tests.test_cli import STATS, json_lines, one_error_line, run

PROMPT = "<|im_start|>assistant\n"  # the tiny model writes text after this


@pytest.fixture
def write(tmp_path):
    def write(name: str, content: str) -> str:
        path = tmp_path / name
        path.write_text(content)
        return str(path)
    return write


@pytest.mark.parametrize("name", ["embed", "rerank", "complete", "infill"])
def test_every_command_has_help_with_examples(name):
    result = run(name, "--help")
    assert result.returncode == 0 and f"usage: llamacpp-lite {name}" in result.stdout
    assert f"llamacpp-lite {name}" in result.stdout.split("examples:")[1]


@pytest.mark.parametrize(("args", "message"), [
    (("embed", "--file", "/nonexistent.txt"), "cannot read the file"),
    (("embed", "a", "--file", "x.txt"), "as arguments or with --file, not both"),
    (("embed", "a", "--batch-limit", "0"), "batch_limit must be a positive int"),
    (("rerank", "q"), "the input on stdin is empty"),
    (("complete", "--param", "n=2", "x"), "n must be 1"),
    (("infill",), "give a prefix or a suffix"),
    (("infill", "--prefix-file", "/nonexistent.py"), "cannot read the prefix file"),
])
def test_bad_input_is_a_usage_error_before_sending(args, message):
    result = run(*args, "--base-url", "http://127.0.0.1:9")  # never reached
    assert result.returncode == 2, result.stderr
    assert message in one_error_line(result, "usage error")


@pytest.mark.real_server
def test_embed_prints_one_json_line_per_input(embedding_server, write):
    url = embedding_server.base_url
    result = run("embed", "--base-url", url, "first", "second text")
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stdout)
    assert [line["index"] for line in lines] == [0, 1] and all(len(line["embedding"]) == N_EMBD for line in lines)
    assert re.fullmatch(r"2 vectors of 64 numbers, \d+ tokens\n", result.stderr)
    from_file = run("embed", "--base-url", url, "-q", "--file", write("in.txt", "first\n\nsecond text\n"))
    assert json_lines(from_file.stdout) == lines and from_file.stderr == ""  # blank lines skipped
    from_stdin = run("embed", "--base-url", url, "-q", input="first\nsecond text\n")
    assert json_lines(from_stdin.stdout) == lines


@pytest.mark.real_server
def test_embed_too_long_exits_2_and_truncate_embeds(embedding_server):
    url = embedding_server.base_url
    result = run("embed", "--base-url", url, "a", "x" * 600)
    assert result.returncode == 2
    assert "input 1 has 600 tokens, more than the 512" in one_error_line(result, "usage error")
    truncated = run("embed", "--base-url", url, "--truncate", "--batch-limit", "100", "a", "x" * 600)
    assert truncated.returncode == 0 and "101 tokens" in truncated.stderr


@pytest.mark.real_server
def test_rerank_prints_the_documents_best_first(rerank_server):
    url = rerank_server.base_url
    result = run("rerank", "--base-url", url, "a", "b", "cc", "a")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert sorted((row[1], row[2]) for row in rows) == [("0", "b"), ("1", "cc"), ("2", "a")]
    scores = [float(row[0]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    top = run("rerank", "--base-url", url, "--json", "--top-n", "1", "a", "b", "cc")
    (line,) = json_lines(top.stdout)
    assert set(line) == {"index", "score", "document"} and line["document"] == ["b", "cc"][line["index"]]


@pytest.mark.real_server
def test_complete_streams_the_text_then_statistics(real_server, real_model, write):
    url = real_server.base_url
    result = run("complete", "--base-url", url, "--max-tokens", "12", "--temperature", "0", PROMPT)
    assert result.returncode == 0, result.stderr
    expected = real_model.complete(PROMPT, max_tokens=12, temperature=0)
    assert result.stdout == expected.text + "\n"
    assert STATS.search(result.stderr).groups() == (str(expected.completion_tokens), expected.stop_reason)
    grammar = run("complete", "--base-url", url, "-q", "--grammar", write("g.gbnf", 'root ::= "yes" | "no"\n'), "Q")
    assert grammar.stdout in ("yes\n", "no\n") and grammar.stderr == ""
    schema = run("complete", "--base-url", url, "-q", "--json-schema", write("s.json", json.dumps({"enum": [7, 8]})),
                 "--param", "seed=2", "N:")
    assert schema.stdout in ("7\n", "8\n")


@pytest.mark.real_server
def test_complete_errors_exit_with_their_status(real_server, small_ctx_server, write):
    url = real_server.base_url
    broken = run("complete", "--base-url", url, "--grammar", write("a.gbnf", 'root ::= "a"\n'), "--param",
                 "ignore_eos=true", "--max-tokens", "5", "hi")  # the grammar is complete after "a": error in-stream
    assert broken.returncode == 11 and broken.stdout == "a\n"
    assert "empty grammar stack" in one_error_line(broken, "stream error")
    rejected = run("complete", "--base-url", url, "--grammar", write("bad.gbnf", "root ::= ("), "hi")
    assert rejected.returncode == 6 and "failed to parse grammar" in one_error_line(rejected, "request rejected")
    overflow = run("complete", "--base-url", small_ctx_server.base_url, "word " * 400)
    assert overflow.returncode == 7


@pytest.mark.real_server
def test_infill_streams_and_a_model_without_fim_exits_8(fim_server, real_server, write):
    result = run("infill", "--base-url", fim_server.base_url, "--prefix-file", write("head.py", "def f(\n"),
                 "--suffix", ")\n", "--extra", write("util.py", "x = 1\n"), "--max-tokens", "6")
    assert result.returncode == 0, result.stderr
    assert STATS.search(result.stderr) and len(result.stdout) > 1
    refused = run("infill", "--base-url", real_server.base_url, "--prefix", "a", "--suffix", "b")
    assert refused.returncode == 8
    assert "Infill is not supported by this model" in one_error_line(refused, "not supported")


@pytest.mark.real_server
def test_embed_and_rerank_on_a_server_without_them_exit_8(real_server):
    for args in (("embed", "a"), ("rerank", "q", "d")):
        result = run(*args, "--base-url", real_server.base_url)
        assert result.returncode == 8 and "Start it with" in one_error_line(result, "not supported")
