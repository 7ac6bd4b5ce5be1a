"""The `llamacpp-lite` command line, run as a real command (`python -m llamacpp_lite`).

Against real llama-servers on the tiny model (which writes gibberish: these tests check
protocol, structure and exit statuses, never meaning), and against the fault-injecting server
for the errors a healthy llama-server does not produce (500, 503, a broken stream, silence).
"""

from __future__ import annotations

import json
import os
import pathlib
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import wave

import pytest

from llamacpp_lite import LlamaCppModel, cli
from llamacpp_lite import _errors as errors
from tests.fault_server import FaultServer, respond_json, silence, sse_stream, text_chunks
from tests.helpers import API_KEY, tiny_png

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATS = re.compile(r"^(\d+) tokens, [\d.]+ tokens/s, stop: (\w+)$", re.M)
THINK_GRAMMAR = 'root ::= "<think>" [a-z]{5,12} "</think>" [a-z]{5,12}\n'
BOOL_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
               "additionalProperties": False}


def cli_env(**extra: str) -> dict:
    """The environment of a command: this one without LLAMACPP_* settings or NO_COLOR, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMACPP_") and k != "NO_COLOR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def command(*args: str) -> list:
    return [sys.executable, "-m", "llamacpp_lite", *args]


def run(*args: str, input: str | None = None, env: dict | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the command to its end; stdin is empty (not a terminal) unless `input` is given."""
    return subprocess.run(command(*args), input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, env=env or cli_env(), timeout=timeout, cwd=ROOT)


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines()]


def one_error_line(result: subprocess.CompletedProcess, label: str) -> str:
    """Check that stderr is one line starting with the status label; return it."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"llamacpp-lite: {label}"), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def url(real_server) -> str:
    return real_server.base_url


@pytest.fixture
def write(tmp_path: pathlib.Path):
    """Write a file in the test's folder and return its path as a string."""
    def write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)
    return write


# -- exit statuses, argument types, help (no server) -----------------------------------------


def test_the_exit_status_table_is_documented_as_mapped():
    documented = re.findall(r"^  (\d+) +(.+)$", cli.__doc__.split("Exit status:")[1], re.M)
    assert [(int(code), meaning) for code, meaning in documented] == \
        [(status.code, status.meaning) for status in cli.EXIT_STATUSES]
    assert len({status.code for status in cli.EXIT_STATUSES}) == len(cli.EXIT_STATUSES)


@pytest.mark.parametrize(("error", "code"), [
    (ValueError("bug"), 1),
    (cli.UsageError("no file"), 2),
    (errors.InvalidRequestError("bad"), 2),
    (errors.ConnectError("refused"), 3),
    (errors.ConnectTimeout("slow connect"), 3),
    (errors.TransportError("other"), 3),
    (errors.ReadTimeout("silent"), 4),
    (errors.AuthenticationError("no", status_code=401), 5),
    (errors.BadRequestError("no", status_code=400), 6),
    (errors.ContextWindowOverflowException("big", status_code=400), 7),
    (errors.NotSupportedError("no", status_code=404), 8),
    (errors.ModalityNotSupportedError("no", modality="vision", status_code=500), 8),
    (errors.ModelThrottledException("later", status_code=503), 9),
    (errors.ServerError("boom", status_code=500), 10),
    (errors.StreamError("cut"), 11),
    (errors.StructuredOutputError("bad", raw_text="{"), 12),
    (errors.ServerStartError("no binary"), 13),
    (KeyboardInterrupt(), 130),
    (BrokenPipeError(), 141),
])
def test_each_error_exits_with_its_most_specific_status(error, code):
    assert cli.exit_status(error).code == code


def test_strands_flavoured_errors_keep_their_status():
    pytest.importorskip("strands")
    import strands.types.exceptions  # noqa: F401  (makes the library raise the Strands-compatible classes)

    overflow = errors.error_from_response(400, json.dumps({"error": {"type": "exceed_context_size_error",
                                                                     "message": "too long"}}))
    throttled = errors.error_from_response(503, json.dumps({"error": {"type": "unavailable_error", "message": "x"}}))
    assert (cli.exit_status(overflow).code, cli.exit_status(throttled).code) == (7, 9)


@pytest.mark.parametrize(("text", "expected"), [
    ("max_tokens=12", ("max_tokens", 12)),
    ("ignore_eos=true", ("ignore_eos", True)),
    ("top_p=0.5", ("top_p", 0.5)),
    ('stop=["a", "b"]', ("stop", ["a", "b"])),
    ('logit_bias={"15": -1}', ("logit_bias", {"15": -1})),
    ("grammar=root ::= \"x\"", ("grammar", 'root ::= "x"')),
    ("name=", ("name", "")),
    ("a=b=c", ("a", "b=c")),
])
def test_param_values_are_json_else_strings(text, expected):
    assert cli.parse_param(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=1", " =1"])
def test_param_without_a_key_is_refused(text):
    with pytest.raises(Exception, match="KEY=VALUE"):
        cli.parse_param(text)


def test_timeout_forms():
    assert cli.parse_timeout("30") == 30.0 and cli.parse_timeout("5,120") == (5.0, 120.0)
    for bad in ("0", "-1", "a", "1,2,3", "1,"):
        with pytest.raises(Exception, match="SECONDS"):
            cli.parse_timeout(bad)


def test_main_help_shows_commands_examples_environment_and_exit_statuses():
    result = run("--help")
    assert result.returncode == 0
    for text in ("chat", "health", "props", "tokens", "serve", "demo", "Examples:", "LLAMACPP_BASE_URL",
                 "LLAMACPP_API_KEY", "Exit status:", "130  interrupted"):
        assert text in result.stdout


@pytest.mark.parametrize("name", ["chat", "health", "props", "tokens", "serve", "demo"])
def test_every_command_has_help_with_examples(name):
    result = run(name, "--help")
    assert result.returncode == 0 and f"usage: llamacpp-lite {name}" in result.stdout
    assert "examples:\n  " in result.stdout and f"llamacpp-lite {name}" in result.stdout.split("examples:")[1]


def test_version():
    result = run("--version")
    assert result.returncode == 0 and re.fullmatch(r"llamacpp-lite \d+\.\d+\.\d+\n", result.stdout)


@pytest.mark.parametrize("args", [
    (),
    ("nosuchcommand",),
    ("chat", "--param", "novalue", "hi"),
    ("chat", "--max-tokens", "many", "hi"),
    ("chat", "--timeout", "0", "hi"),
    ("chat", "--grammar", "g.gbnf", "--json-schema", "s.json", "hi"),
    ("tokens", "--raw", "--system", "x", "hi"),
    ("tokens", "--file", "f.txt", "hi"),
])
def test_usage_errors_exit_2_before_anything_is_sent(args):
    result = run(*args)
    assert result.returncode == 2 and "usage: llamacpp-lite" in result.stderr and "Traceback" not in result.stderr


def test_unreadable_inputs_are_usage_errors(write):
    not_json = write("schema.json", "{not json")
    not_a_schema = write("bad-schema.json", json.dumps({"type": 12}))
    base = ("--base-url", "http://127.0.0.1:9")  # never reached: the input fails first
    cases = [
        (("chat", "--grammar", "/nonexistent.gbnf", "hi"), "cannot read the grammar file"),
        (("chat", "--json-schema", not_json, "hi"), "is not JSON"),
        (("chat", "--json-schema", not_a_schema, "hi"), "not a valid JSON Schema"),
        (("chat", "--image", "/nonexistent.png", "hi"), "cannot read the image file"),
        (("chat", "--audio", write("noformat", b"RIFF"), "hi"), "needs a suffix"),
        (("chat", "--param", "messages=[]", "hi"), "cannot be set through params"),
        (("chat",), "the input on stdin is empty"),
        (("tokens", "--file", "/nonexistent.txt"), "cannot read the file"),
    ]
    for args, message in cases:
        result = run(*args, *base)
        assert result.returncode == 2, (args, result.stderr)
        assert message in one_error_line(result, "usage error")


def test_library_warnings_are_one_line_each():
    result = run("chat", "--base-url", "http://127.0.0.1:9", "--param", "tfs_z=1", "hi")
    assert result.returncode == 3
    assert result.stderr.splitlines()[0] == ("llamacpp-lite: warning: parameter 'tfs_z' is not sent: tail-free "
                                             "sampling was removed from llama.cpp (2024)")


# -- chat: one answer ------------------------------------------------------------------------

@pytest.mark.real_server
def test_one_answer_streams_text_then_a_statistics_line(url):
    result = run("chat", "--base-url", url, "--max-tokens", "12", "Tell me a story.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and result.stdout.endswith("\n") and result.stdout.count("\n") >= 1
    stats = STATS.fullmatch(result.stderr.strip())
    assert stats and 1 <= int(stats.group(1)) <= 12 and stats.group(2) in ("end_turn", "max_tokens")


@pytest.mark.real_server
@pytest.mark.parametrize("prompt_args", [(), ("-",)])
def test_the_prompt_can_come_from_stdin(url, real_model, prompt_args):
    result = run("chat", "--base-url", url, "--json", "-q", "--max-tokens", "2", *prompt_args,
                 input="Count these words, please.\n")
    assert result.returncode == 0, result.stderr
    usage = json_lines(result.stdout)[-1]["metadata"]["usage"]
    assert usage["inputTokens"] == real_model.count_tokens("Count these words, please.\n")


@pytest.mark.real_server
def test_json_prints_every_stream_event_as_a_json_line(url):
    result = run("chat", "--base-url", url, "--json", "--max-tokens", "5", "--param", "ignore_eos=true", "hi")
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    kinds = [next(iter(event)) for event in events]
    assert kinds[:2] == ["messageStart", "contentBlockStart"] and kinds[-3:] == ["contentBlockStop", "messageStop",
                                                                                 "metadata"]
    assert set(kinds[2:-3]) == {"contentBlockDelta"}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 5
    assert STATS.fullmatch(result.stderr.strip()).groups() == ("5", "max_tokens")


@pytest.mark.real_server
def test_quiet_prints_nothing_on_stderr(url):
    result = run("chat", "--base-url", url, "--quiet", "--max-tokens", "3", "hi")
    assert result.returncode == 0 and result.stdout.strip() and result.stderr == ""


@pytest.mark.real_server
def test_max_tokens_and_typed_params_reach_the_server(url):
    result = run("chat", "--base-url", url, "--json", "--max-tokens", "7", "--param", "ignore_eos=true",
                 "--param", "top_k=1", "hi")
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 7  # "true" was sent as a JSON boolean
    assert {"messageStop": {"stopReason": "max_tokens"}} in events


@pytest.mark.real_server
def test_a_param_value_that_is_not_json_is_sent_as_a_string(url):
    result = run("chat", "--base-url", url, "-q", "--param", 'grammar=root ::= "yes" | "no"', "answer")
    assert result.returncode == 0 and result.stdout in ("yes\n", "no\n")


@pytest.mark.real_server
def test_system_prompt_is_sent(url, real_model):
    def input_tokens(*args: str) -> int:
        result = run("chat", "--base-url", url, "--json", "-q", "--max-tokens", "1", *args, "hi")
        return json_lines(result.stdout)[-1]["metadata"]["usage"]["inputTokens"]

    short, long = "Be terse.", "Be terse, kind and quick, and answer in English."
    assert input_tokens("--system", short) == real_model.count_tokens("hi", system_prompt=short)
    assert input_tokens("--system", long) == real_model.count_tokens("hi", system_prompt=long) > \
        real_model.count_tokens("hi", system_prompt=short)


@pytest.mark.real_server
def test_temperature_and_seed_reach_the_server(url):
    def text(*args: str) -> str:
        result = run("chat", "--base-url", url, "-q", "--max-tokens", "24", "--param", "ignore_eos=true", *args, "hi")
        assert result.returncode == 0, result.stderr
        return result.stdout

    hot = text("--temperature", "1.5", "--seed", "7")
    assert hot == text("--temperature", "1.5", "--seed", "7")
    assert hot != text("--temperature", "1.5", "--seed", "8")
    assert text("--temperature", "0") == text("--temperature", "0", "--seed", "8")


@pytest.mark.real_server
def test_grammar_file_constrains_the_answer(url, write):
    grammar = write("answer.gbnf", 'root ::= "yes" | "no" | "maybe " [0-9]\n')
    for seed in ("1", "2"):
        result = run("chat", "--base-url", url, "-q", "--grammar", grammar, "--seed", seed, "--temperature", "1",
                     "answer")
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"(yes|no|maybe \d)\n", result.stdout)


@pytest.mark.real_server
def test_json_schema_prints_only_the_validated_json(url, write):
    schema = write("ok.json", json.dumps(BOOL_SCHEMA))
    result = run("chat", "--base-url", url, "--json-schema", schema, "--max-tokens", "100", "ok?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and isinstance(json.loads(result.stdout)["ok"], bool)
    assert STATS.fullmatch(result.stderr.strip())
    events = json_lines(run("chat", "--base-url", url, "--json", "-q", "--json-schema", schema, "ok?").stdout)
    assert isinstance(events[-1]["output"]["ok"], bool) and "metadata" in events[-2]


@pytest.mark.real_server
def test_json_schema_answer_cut_short_is_invalid_structured_output(url, write):
    schema = write("ok.json", json.dumps(BOOL_SCHEMA))
    result = run("chat", "--base-url", url, "-q", "--json-schema", schema, "--max-tokens", "2", "ok?")
    assert result.returncode == 12 and result.stdout == ""
    assert "cut off by max_tokens" in one_error_line(result, "invalid structured output")


@pytest.mark.real_server
def test_image_and_audio_to_a_text_only_model_are_not_supported(url, write):
    audio = write("beep.wav", b"")
    with wave.open(audio, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(8000)
        file.writeframes(b"\0\0" * 800)  # 0.1 s of silence
    for option, path, modality in (("--image", write("dot.png", tiny_png()), "vision"), ("--audio", audio, "audio")):
        result = run("chat", "--base-url", url, option, path, "What is this?")
        assert result.returncode == 8, result.stderr
        assert f"no {modality} input" in one_error_line(result, "not supported")


@pytest.mark.real_server
def test_image_and_audio_together_reach_a_multimodal_server(mm_server, write):
    """The projector turns each image and each started 30 s of audio into a known number of tokens."""
    from llamacpp_lite.testing import TOKENS_PER_AUDIO_CHUNK, TOKENS_PER_IMAGE, tiny_wav
    from tests.media import jpeg, mp3

    def input_tokens(*args: str) -> int:
        result = run("chat", "--base-url", mm_server.base_url, "--json", "-q", "--max-tokens", "1", *args,
                     "What is this?")
        assert result.returncode == 0, result.stderr
        return json_lines(result.stdout)[-1]["metadata"]["usage"]["inputTokens"]

    png, wav = write("dot.png", tiny_png()), write("tone.wav", tiny_wav())
    text = input_tokens()
    assert input_tokens("--image", png, "--audio", wav) == text + TOKENS_PER_IMAGE + TOKENS_PER_AUDIO_CHUNK
    assert input_tokens("--audio", write("a.mp3", mp3()), "--image", write("b.JPG", jpeg()), "--image", png) == \
        text + 2 * TOKENS_PER_IMAGE + TOKENS_PER_AUDIO_CHUNK


@pytest.mark.real_server
@pytest.mark.parametrize(("name", "content", "code", "label", "message"), [
    ("garbage.png", b"this is not an image", 6, "request rejected", "400 invalid_request_error: Failed to load image"),
    ("empty.wav", "empty wav", 6, "request rejected", "400 invalid_request_error: Failed to load image"),
    ("photo.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8L", 2, "usage error", "image format 'webp' is not decodable"),
    ("clip.ogg", b"OggS\x00\x02", 2, "usage error", "audio format 'ogg' is not decodable"),
    ("nothing.png", b"", 2, "usage error", "image source bytes are empty"),
])
def test_media_a_multimodal_server_cannot_take_have_their_exit_status(mm_server, write, name, content, code,
                                                                      label, message):
    from llamacpp_lite.testing import tiny_wav

    option = "--audio" if name.endswith((".wav", ".ogg")) else "--image"
    path = write(name, tiny_wav(0) if content == "empty wav" else content)
    result = run("chat", "--base-url", mm_server.base_url, option, path, "What is this?")
    assert result.returncode == code and result.stdout == ""
    assert message in one_error_line(result, label)
    with LlamaCppModel(mm_server.base_url) as model:
        assert model.health() == {"status": "ok"}


# -- chat: a conversation -----------------------------------------------------------------------


@pytest.mark.real_server
def test_conversation_keeps_history_and_reset_starts_over(url, real_model):
    result = run("chat", "-i", "--base-url", url, "--json", "-q", "--max-tokens", "4", "--param", "ignore_eos=true",
                 input="hello\nagain\n/reset\nthird\n")  # then end of input
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    metadata = [e["metadata"]["usage"]["inputTokens"] for e in events if "metadata" in e]
    answers, current = [], []
    for event in events:
        if "contentBlockDelta" in event:
            current.append(event["contentBlockDelta"]["delta"]["text"])
        elif "messageStop" in event:
            answers.append("".join(current))
            current = []
    history = [{"role": "user", "content": [{"text": "hello"}]},
               {"role": "assistant", "content": [{"text": answers[0]}]},
               {"role": "user", "content": [{"text": "again"}]}]
    assert metadata == [real_model.count_tokens("hello"), real_model.count_tokens(history),
                        real_model.count_tokens("third")]
    assert "(new conversation)" in result.stderr


@pytest.mark.real_server
def test_conversation_quit_and_the_first_prompt_argument(url):
    result = run("chat", "-i", "--base-url", url, "--json", "-q", "--max-tokens", "2", "first",
                 input="second\n/quit\nnever sent\n")
    assert result.returncode == 0, result.stderr
    assert sum("metadata" in event for event in json_lines(result.stdout)) == 2


@pytest.mark.real_server
def test_conversation_reports_a_failed_turn_and_goes_on(small_ctx_server):
    lines = "word " * 400 + "\nhi\n" + "word " * 400 + "\n"
    result = run("chat", "-i", "--base-url", small_ctx_server.base_url, "-q", "--max-tokens", "2", input=lines)
    assert result.returncode == 7  # the status of the last turn
    assert result.stderr.count("llamacpp-lite: context overflow:") == 2 and result.stdout.strip()


# -- chat: reasoning ------------------------------------------------------------------------------


@pytest.mark.real_server
def test_reasoning_is_prefixed_when_stdout_is_not_a_terminal(reasoning_server, write):
    grammar = write("think.gbnf", THINK_GRAMMAR)
    base = ("chat", "--base-url", reasoning_server.base_url, "-q", "--grammar", grammar, "--max-tokens", "60",
            "--seed", "3", "think first")
    shown = run(*base)
    assert shown.returncode == 0, shown.stderr
    reasoning, answer = shown.stdout.splitlines()
    assert re.fullmatch(r"reasoning: [a-z]{5,12}", reasoning) and re.fullmatch(r"[a-z]{5,12}", answer)
    hidden = run(*base, "--hide-reasoning")
    assert hidden.returncode == 0 and hidden.stdout == answer + "\n"


@pytest.mark.real_server
def test_reasoning_is_dimmed_on_a_terminal(reasoning_server, write):
    grammar = write("think.gbnf", THINK_GRAMMAR)
    controller, terminal = pty.openpty()
    with subprocess.Popen(command("chat", "--base-url", reasoning_server.base_url, "-q", "--grammar", grammar,
                                  "--max-tokens", "60", "--seed", "3", "think first"),
                          stdout=terminal, stdin=subprocess.DEVNULL, env=cli_env(), cwd=ROOT) as process:
        os.close(terminal)
        output = b""
        try:
            while select.select([controller], [], [], 60)[0]:
                output += os.read(controller, 4096)
        except OSError:  # EIO: the command ended and closed the terminal
            pass
        finally:
            os.close(controller)
            process.kill()
    assert process.returncode == 0
    text = output.decode()
    assert re.match(r"(\x1b\[2m[a-z]+\x1b\[0m)+\r\n[a-z]{5,12}\r\n$", text), text
    assert "reasoning:" not in text


# -- connection settings and errors --------------------------------------------------------------


@pytest.mark.real_server
def test_base_url_from_the_environment(url):
    result = run("health", env=cli_env(LLAMACPP_BASE_URL=url))
    assert result.returncode == 0 and result.stdout == f"{url}: ok\n"


@pytest.mark.real_server
def test_api_key_from_flag_or_environment_and_never_echoed(auth_server):
    base = ("chat", "--base-url", auth_server.base_url, "--max-tokens", "2")
    by_flag = run(*base, "--api-key", API_KEY, "hi")
    by_env = run(*base, "hi", env=cli_env(LLAMACPP_API_KEY=API_KEY))
    assert by_flag.returncode == by_env.returncode == 0
    missing = run(*base, "hi")
    assert missing.returncode == 5 and "Invalid API Key" in one_error_line(missing, "authentication failed")
    wrong_key = "wrong-key-5d2e9a"
    for debug in ((), ("--debug",)):
        wrong = run(*base, "--api-key", wrong_key, *debug, "hi")
        assert wrong.returncode == 5
        assert wrong_key not in wrong.stdout + wrong.stderr
    for result in (by_flag, by_env, missing):
        assert API_KEY not in result.stdout + result.stderr


@pytest.mark.real_server
def test_tokens_with_the_api_key(auth_server):
    result = run("tokens", "--base-url", auth_server.base_url, "hi", env=cli_env(LLAMACPP_API_KEY=API_KEY))
    assert result.returncode == 0 and int(result.stdout) > 0


def test_no_server_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = run("health", "--base-url", f"http://127.0.0.1:{port}")
    assert result.returncode == 3 and "cannot connect" in one_error_line(result, "connection error")


def test_timeout_when_the_server_stays_silent():
    with FaultServer() as server:
        server.default = silence()
        started = time.monotonic()
        result = run("chat", "--base-url", server.url, "--timeout", "5,0.5", "hi")
    assert result.returncode == 4 and "read timeout" in one_error_line(result, "timeout")
    assert time.monotonic() - started < 30


def test_server_error_busy_and_broken_stream_statuses():
    with FaultServer() as server:
        server.script(respond_json(500, {"error": {"code": 500, "type": "server_error", "message": "boom"}}))
        failed = run("chat", "--base-url", server.url, "hi")
        server.default = respond_json(503, {"error": {"code": 503, "type": "unavailable_error",
                                                      "message": "Loading model"}}, headers=[("Retry-After", "0")])
        busy = run("health", "--base-url", server.url)
        server.default = sse_stream(*text_chunks("Hel", "lo")[:2], done=False, end="cut")
        broken = run("chat", "--base-url", server.url, "hi")
    assert failed.returncode == 10 and "boom" in one_error_line(failed, "server error")
    assert busy.returncode == 9 and "Loading model" in one_error_line(busy, "server busy")
    assert broken.returncode == 11 and "Hel" in broken.stdout and one_error_line(broken, "stream error")


@pytest.mark.real_server
def test_server_rejection_and_context_overflow(url, small_ctx_server):
    rejected = run("chat", "--base-url", url, "--param", 'temperature="hot"', "hi")
    assert rejected.returncode == 6 and "type must be number" in one_error_line(rejected, "request rejected")
    overflow = run("chat", "--base-url", small_ctx_server.base_url, "word " * 400)
    assert overflow.returncode == 7 and "exceeds the available context" in one_error_line(overflow,
                                                                                          "context overflow")


@pytest.mark.real_server
def test_debug_adds_the_traceback(small_ctx_server):
    for args in (("--debug", "chat"), ("chat", "--debug")):
        result = run(*args, "--base-url", small_ctx_server.base_url, "word " * 400)
        assert result.returncode == 7
        assert "Traceback (most recent call last)" in result.stderr
        assert "ContextWindowOverflowException" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1].startswith("llamacpp-lite: context overflow:")


@pytest.mark.real_server
def test_ctrl_c_closes_the_stream_frees_the_slot_and_exits_130(one_slot_server):
    with subprocess.Popen(command("chat", "--base-url", one_slot_server.base_url, "--param", "ignore_eos=true",
                                  "--max-tokens", "5000", "go"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          env=cli_env(), cwd=ROOT) as process:
        try:
            assert select.select([process.stdout], [], [], 60)[0], "no output"
            assert os.read(process.stdout.fileno(), 1)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=15)
        finally:
            process.kill()
    assert process.returncode == 130
    assert stderr.decode().splitlines()[-1] == "llamacpp-lite: interrupted"
    with LlamaCppModel(one_slot_server.base_url, timeout=(5, 30)) as model:
        started = time.monotonic()
        result = model.chat("hi", max_tokens=4, ignore_eos=True)
        assert time.monotonic() - started < 5 and result.usage["outputTokens"] == 4


@pytest.mark.real_server
def test_closed_stdout_exits_141_quietly(url):
    with subprocess.Popen(command("chat", "--base-url", url, "--param", "ignore_eos=true", "--max-tokens", "3000",
                                  "go"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          env=cli_env(), cwd=ROOT) as process:
        try:
            assert select.select([process.stdout], [], [], 60)[0], "no output"
            process.stdout.close()  # as `| head -c1` does
            stderr = process.stderr.read()
            process.wait(30)
        finally:
            process.kill()
    assert process.returncode == 141 and stderr == b""


# -- health, props, tokens -----------------------------------------------------------------------


@pytest.mark.real_server
def test_health(url):
    human = run("health", "--base-url", url, "--wait", "5")
    assert human.returncode == 0 and human.stdout == f"{url}: ok\n"
    as_json = run("health", "--base-url", url, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == {"status": "ok"}


def test_health_wait_times_out_on_a_dead_port():
    result = run("health", "--base-url", "http://127.0.0.1:9", "--wait", "0.5")
    assert result.returncode == 4 and "not ready within 0.5 s" in one_error_line(result, "timeout")


@pytest.mark.real_server
def test_props(url, real_model):
    props = real_model.props()
    human = run("props", "--base-url", url)
    assert human.returncode == 0
    lines = dict(line.split(None, 1) for line in human.stdout.splitlines())
    assert lines["server"] == url and lines["context"] == f"{props.n_ctx} tokens per slot"
    assert lines["slots"] == str(props.total_slots) and lines["media"] == "none" and "tool calls" in lines["template"]
    as_json = json.loads(run("props", "--base-url", url, "--json").stdout)
    assert as_json == {"n_ctx": props.n_ctx, "total_slots": props.total_slots, "modalities": props.modalities,
                       "chat_template_caps": props.chat_template_caps, "build_info": props.build_info,
                       "model_path": props.model_path}


@pytest.mark.real_server
def test_tokens_counts_exactly_as_the_server(url, real_model, write):
    text = "How many tokens is this prompt?"

    def tokens(*args: str, input: str | None = None) -> int:
        result = run("tokens", "--base-url", url, *args, input=input)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return int(result.stdout)

    assert tokens(text) == tokens(input=text) == tokens("--file", write("p.txt", text)) == real_model.count_tokens(text)
    assert tokens("--system", "Be terse.", text) == real_model.count_tokens(text, system_prompt="Be terse.")
    assert tokens("--raw", text) == tokens("--raw", "-", input=text) == len(real_model.tokenize(text))


def test_tokens_never_estimates_without_a_server():
    result = run("tokens", "--base-url", "http://127.0.0.1:9", "hi")
    assert result.returncode == 3 and result.stdout == ""


# -- serve and demo ------------------------------------------------------------------------------


@pytest.mark.real_server
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_its_url_and_stops_on_a_signal(llama_server_binary, tiny_model, tmp_path, stop_signal):
    model_args = (str(tiny_model),) if stop_signal == signal.SIGTERM else ()  # SIGINT: the default tiny model
    env = cli_env(LLAMA_SERVER_BIN=str(llama_server_binary), LLAMACPP_LITE_CACHE=str(tmp_path))
    with subprocess.Popen(command("serve", *model_args, "--server-args=-t 2 --no-webui -np 1"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                          env=env, cwd=ROOT) as process:
        try:
            base_url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url), process.stderr.read()
            with LlamaCppModel(base_url, timeout=(5, 30)) as model:
                assert model.health() == {"status": "ok"}
                assert model.chat("hi", max_tokens=2).usage["outputTokens"] >= 1
                assert model.props().model_path == str(model_args[0] if model_args else tmp_path / "tiny-chat.gguf")
            process.send_signal(stop_signal)
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 0 and stderr.splitlines()[-1] == "llamacpp-lite: llama-server stopped"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(base_url.rsplit(":", 1)[1])), timeout=2).close()


def test_serve_a_file_that_is_not_gguf_fails_to_start(write, tmp_path):
    bad = write("model.gguf", b"not a model")
    result = run("serve", bad, env=cli_env(LLAMA_SERVER_BIN=sys.executable))
    assert result.returncode == 13 and "is not a GGUF file" in one_error_line(result, "server start failed")
    missing = run("serve", bad, env=cli_env(LLAMA_SERVER_BIN=str(tmp_path / "no-such-binary")))
    assert missing.returncode == 13 and "not found" in one_error_line(missing, "server start failed")


@pytest.mark.real_server
def test_demo_against_a_given_server(url):
    for args, env in ((("--base-url", url), cli_env()), ((), cli_env(LLAMACPP_BASE_URL=url))):
        result = run("demo", *args, env=env)
        assert result.returncode == 0, result.stderr
        for heading in ("1. streaming a reply", "2. a tool call", "3. structured output", "4. an image and an audio"):
            assert heading in result.stdout
        assert "started llama-server" not in result.stdout
        for kind, modality in (("image", "vision"), ("audio", "audio")):  # a text-only model
            assert f"   {kind}: skipped, the server reports no {modality} input" in result.stdout


def media_growth(demo_output: str) -> dict:
    """The prompt-token growth the demo printed for each kind of media."""
    return {kind: int(growth) for kind, growth in re.findall(r"^   (image|audio): \+(\d+) prompt tokens", demo_output,
                                                              re.M)}


@pytest.mark.real_server
def test_demo_against_a_multimodal_server_sends_both_media(mm_server):
    from llamacpp_lite.testing import TOKENS_PER_AUDIO_CHUNK, TOKENS_PER_IMAGE

    result = run("demo", "--base-url", mm_server.base_url)
    assert result.returncode == 0, result.stderr
    assert media_growth(result.stdout) == {"image": TOKENS_PER_IMAGE, "audio": TOKENS_PER_AUDIO_CHUNK}


@pytest.mark.real_server
def test_demo_on_a_managed_server(llama_server_binary, tmp_path):
    from llamacpp_lite.testing import TOKENS_PER_AUDIO_CHUNK, TOKENS_PER_IMAGE

    result = run("demo", env=cli_env(LLAMA_SERVER_BIN=str(llama_server_binary), LLAMACPP_LITE_CACHE=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "started llama-server" in result.stdout and result.stdout.rstrip().endswith("stopped llama-server")
    assert "with the tiny model and projector" in result.stdout and (tmp_path / "tiny-mmproj.gguf").is_file()
    assert media_growth(result.stdout) == {"image": TOKENS_PER_IMAGE, "audio": TOKENS_PER_AUDIO_CHUNK}

