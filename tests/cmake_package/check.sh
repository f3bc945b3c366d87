#!/usr/bin/env bash
# check.sh SOURCE_DIR BUILD_DIR — installs mp from BUILD_DIR into a scratch prefix, builds
# the consumer against it with find_package, then again with add_subdirectory, and
# runs both.
set -euo pipefail
src=$1 build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/cmake_package" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/installed" >/dev/null
"$work/installed/consumer" | grep -q "hello from a consumer of mp"
cmake -S "$src/tests/cmake_package" -B "$work/vendored" -DMP_SOURCE_DIR="$src" >/dev/null
cmake --build "$work/vendored" --target consumer >/dev/null
"$work/vendored/consumer" | grep -q "hello from a consumer of mp"
echo "find_package and add_subdirectory consumers both work"
