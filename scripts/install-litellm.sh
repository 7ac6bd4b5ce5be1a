#!/usr/bin/env bash
# LiteLLM's proxy, for the suite's tests of the client behind it (tests/test_litellm_proxy.py).
# It is about 120 packages and 750 MB, so it lives in a virtualenv of its own in the cache
# (${LLAMACPP_LITE_CACHE:-~/.cache/llamacpp-lite}/litellm-<version>), installed once per machine
# (about 2 minutes), never in the project's environment. Prints the path of its `litellm` command.
set -euo pipefail
VERSION="1.108.7"
PYTHON="${PYTHON:-python3}"
home="${LLAMACPP_LITE_CACHE:-$HOME/.cache/llamacpp-lite}/litellm-$VERSION"
binary="$home/bin/litellm"
if [[ -x "$binary" && -f "$home/.complete" ]]; then
  echo "$binary"
  exit 0
fi
echo "install-litellm: installing litellm[proxy]==$VERSION into $home (once per machine, about 2 minutes)" >&2
rm -rf "$home"
"$PYTHON" -m venv "$home" >&2
"$home/bin/python" -m pip install -qq --disable-pip-version-check "litellm[proxy]==$VERSION" >&2
touch "$home/.complete"
echo "$binary"
