"""Through a real LiteLLM proxy in front of a real llama-server (opt-in).

LiteLLM's proxy (`litellm[proxy]` 1.108.7, about 120 packages and 750 MB) is not one of the
project's dependencies: `./run.sh test` installs it once per machine into a virtualenv of its own in
the cache (scripts/install-litellm.sh) and passes its command as `$LITELLM_BIN`. Without it these
tests fail with CI=true and are skipped with a loud reason elsewhere.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time
from typing import Iterator

import pytest
import requests

from llamacpp_lite import BadRequestError, LlamaCppModel, NotSupportedError
from llamacpp_lite.server import stop_process
from tests.helpers import ADD_TOOL
from tests.nginx import free_port

pytestmark = pytest.mark.real_server

MASTER_KEY = "sk-litellm-test-5b0e2a9c"
CONFIG = """\
model_list:
  - model_name: tiny
    litellm_params:
      model: openai/tiny
      api_base: {api_base}
      api_key: none
general_settings:
  master_key: {key}
"""


@pytest.fixture(scope="module")
def litellm_url(request, tmp_path_factory) -> Iterator[str]:
    binary = os.environ.get("LITELLM_BIN") or shutil.which("litellm")
    if not binary:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but no LiteLLM proxy: run scripts/install-litellm.sh and set $LITELLM_BIN",
                        pytrace=False)
        pytest.skip("LiteLLM proxy tests skipped: set $LITELLM_BIN to the `litellm` command of an environment "
                    "with litellm[proxy] installed")
    real_server = request.getfixturevalue("real_server")
    folder = tmp_path_factory.mktemp("litellm")
    config = folder / "config.yaml"
    config.write_text(CONFIG.format(api_base=real_server.base_url + "/v1", key=MASTER_KEY))
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # no download of the price list
    with open(folder / "litellm.log", "wb") as log:
        process = subprocess.Popen([binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, pathlib.Path(folder / "litellm.log").read_text()[-2000:]
            try:
                if requests.get(url + "/health/liveliness", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "LiteLLM did not start within 120 s"
            time.sleep(0.5)
        yield url
    finally:
        stop_process(process, 10)


@pytest.fixture
def through_litellm(litellm_url) -> Iterator[LlamaCppModel]:
    with LlamaCppModel(litellm_url, model_id="tiny", api_key=MASTER_KEY, timeout=(5, 60)) as model:
        yield model


def test_chat_streams_and_tool_calls_pass_through(through_litellm):
    deltas = [event for event in through_litellm.stream("Tell me a story.", max_tokens=40, ignore_eos=True)
              if "contentBlockDelta" in event]
    assert len(deltas) > 10  # token by token; ignore_eos (a llama.cpp field) reached the server
    result = through_litellm.chat("What is 2 + 3? Use the tool.", tool_specs=[ADD_TOOL], max_tokens=60,
                                  temperature=0)
    assert result.stop_reason == "tool_use" and result.tool_uses[0].name == "add"
    assert set(result.tool_uses[0].input) == {"a", "b"}


def test_unknown_models_and_llama_server_only_endpoints(litellm_url, through_litellm):
    with LlamaCppModel(litellm_url, model_id="gamma", api_key=MASTER_KEY) as gamma, \
            pytest.raises(BadRequestError, match="gamma"):
        gamma.chat("hi", max_tokens=2)
    for call in (through_litellm.props, through_litellm.slots, through_litellm.metrics,
                 lambda: through_litellm.count_tokens("hi", estimate=False)):
        with pytest.raises(NotSupportedError):
            call()
    assert through_litellm.count_tokens("hi") > 0  # estimated
    assert [model.id for model in through_litellm.models()] == ["tiny"]
