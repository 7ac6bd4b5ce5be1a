"""Secrets: the API key and URL credentials are sent where they belong and shown nowhere else."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import traceback

import pytest

import llamacpp_lite as lite
from llamacpp_lite import AsyncLlamaCppModel, LlamaCppModel
from tests import fault_server as fs

KEY = "canary-key-4e1f"
PASSWORD = "url-password-9d2a"
AUTH_401 = {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}


def everything_shown(model, error, caplog):
    """All text a user could see: reprs, config, the error chain, its traceback, the log."""
    chain, seen = [], error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join([repr(model), str(model.get_config()), repr(AsyncLlamaCppModel.wrap(model)),
                      *(f"{e!s} {e!r} {getattr(e, 'payload', '')} {getattr(e, 'body', '')}" for e in chain),
                      "".join(traceback.format_exception(error)), *(formatter.format(r) for r in caplog.records)])


@pytest.fixture
def debug_logs(caplog):
    for logger in (None, "urllib3", "requests", "llamacpp_lite"):
        caplog.set_level(logging.DEBUG, logger=logger)
    return caplog


@pytest.mark.parametrize("given", [f"  {KEY}\n", f"{KEY}\r\n", f"\t{KEY} "])
def test_a_key_with_surrounding_whitespace_is_stripped_and_never_shown(server, make_model, debug_logs, given):
    server.script(fs.respond_json(401, AUTH_401))
    model = make_model(server.url, api_key=given)
    with pytest.raises(lite.AuthenticationError) as info:
        model.chat("hi")
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in everything_shown(model, info.value, debug_logs)


def test_a_key_from_the_environment_with_a_newline_works(server, make_model, monkeypatch):
    monkeypatch.setenv("LLAMACPP_API_KEY", KEY + "\n")  # as `export KEY=$(cat key.txt)` leaves it
    server.script(fs.text_stream("ok"))
    assert make_model(server.url).chat("hi").text == "ok"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("bad,why", [
    ("canary\nkey-4e1f", "control characters"),
    ("canary\x00key", "control characters"),
    ("canary-ключ-4e1f", "Latin-1"),
    ("canary-☃-4e1f", "Latin-1"),
])
def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(bad, why):
    with pytest.raises(lite.InvalidRequestError, match=why) as info:
        LlamaCppModel("http://127.0.0.1:9", api_key=bad)
    text = f"{info.value!s} {info.value!r}"
    assert "canary" not in text and "4e1f" not in text


def test_headers_are_checked_and_their_values_never_shown():
    with pytest.raises(lite.InvalidRequestError, match="X-Token") as info:
        LlamaCppModel("http://127.0.0.1:9", headers={"X-Token": "secret\nvalue"})
    assert "secret" not in str(info.value)
    for headers in ({"Bad Name": "x"}, {"X-A": 1}, ["X-A"], {"X-A": "☃"}):
        with pytest.raises(lite.InvalidRequestError):
            LlamaCppModel("http://127.0.0.1:9", headers=headers)


@pytest.fixture
def netrc(tmp_path, monkeypatch):
    path = tmp_path / ".netrc"
    path.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    return path


def test_netrc_never_replaces_the_key_and_is_never_read(server, make_model, netrc):
    server.script(fs.text_stream("a"), fs.text_stream("b"))
    assert make_model(server.url, api_key=KEY).chat("hi").text == "a"
    assert make_model(server.url).chat("hi").text == "b"
    assert [r.headers.get("authorization") for r in server.requests] == [f"Bearer {KEY}", None]


def test_url_credentials_are_basic_auth_without_a_key_and_never_shown(server, make_model, debug_logs):
    url = server.url.replace("http://", f"http://proxy-user:{PASSWORD}@")
    server.script(fs.text_stream("a"), fs.text_stream("b"), fs.respond_json(401, AUTH_401))
    assert make_model(url).chat("hi").text == "a"
    assert make_model(url, api_key=KEY).chat("hi").text == "b"  # the explicit key wins
    basic = "Basic " + base64.b64encode(f"proxy-user:{PASSWORD}".encode()).decode()
    assert [r.headers["authorization"] for r in server.requests] == [basic, f"Bearer {KEY}"]
    model = make_model(url)
    assert model.base_url == server.url and PASSWORD not in repr(model)
    with pytest.raises(lite.AuthenticationError) as info:
        model.chat("hi")
    assert PASSWORD not in everything_shown(model, info.value, debug_logs)


def test_url_credentials_never_show_in_connection_errors(debug_logs):
    with fs.FaultServer(listen=False) as closed:
        url = closed.url.replace("http://", f"http://user:{PASSWORD}@")
        model = LlamaCppModel(url, retry=None, timeout=(1, 1))
        with pytest.raises(lite.ConnectError) as info:
            model.health()
    assert PASSWORD not in everything_shown(model, info.value, debug_logs)


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "llamacpp_lite", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_the_command_line_never_prints_the_key_or_url_credentials(server, monkeypatch):
    server.default = fs.respond_json(401, AUTH_401)
    outputs = [
        cli("health", "--base-url", server.url, "--api-key", f" {KEY}\n"),
        cli("chat", "--base-url", server.url.replace("http://", f"http://u:{PASSWORD}@"), "hi"),
        cli("health", "--base-url", server.url, "--api-key", "canary\nkey-4e1f"),
        cli("health", "--base-url", "http://u:" + PASSWORD + "@127.0.0.1:9", "--timeout", "1", "--debug"),
    ]
    assert [o.returncode for o in outputs] == [5, 5, 2, 3]
    for output in outputs:
        text = output.stdout + output.stderr
        assert KEY not in text and PASSWORD not in text and "4e1f" not in text, text
