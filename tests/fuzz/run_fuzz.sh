#!/usr/bin/env bash
# Bounded fuzzing: builds the libFuzzer targets of tests/fuzz/ with clang
# (ASan + UBSan, BALLISTICS_FUZZ=ON: only the libraries they need), generates
# the seed corpora from ../shared/data, and runs every target for SECONDS.
# Fails on any crash, sanitizer report, leak, timeout (>10 s per input) or
# out-of-memory (>2 GiB); the input is left in <build dir>/tests/fuzz/fuzz-artifacts/.
# Usage: tests/fuzz/run_fuzz.sh [build dir (build-fuzz)] [seconds per target (20)]
# A longer run of one target: see docs/reliability.md, "Fuzzing".
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"

dir="${1:-$REPO_ROOT/build-fuzz}"
secs="${2:-${BALLISTICS_FUZZ_SECONDS:-20}}"
log "building the fuzz targets into $dir (clang, address+undefined)"
cmake -S "$REPO_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DBALLISTICS_FUZZ=ON \
  -DBALLISTICS_FUZZ_SECONDS="$secs" >/dev/null
cmake --build "$dir" -j "${JOBS:-2}"
log "fuzzing each target for $secs s"
cd "$dir"
ctest -L fuzz --output-on-failure -j "${JOBS:-2}"
