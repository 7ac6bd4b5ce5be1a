#!/usr/bin/env bash
# The README's two set-up commands, for a fresh machine:
#   ./run.sh demo [--base-url URL]   the main job: stream replies from a real llama-server
#                                    (the managed one on the tiny model, or yours with --base-url)
#   ./run.sh test [pytest args]      the test suite, real llama-server included
# Both create the virtualenv $VENV (default .venv) and install what they need into it;
# the managed llama-server is built once per machine by scripts/install-llama-server.sh.
set -euo pipefail
cd "$(dirname "$0")"
command="${1:-}"
shift || true
VENV="${VENV:-.venv}"

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[test,testing,strands]'

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
