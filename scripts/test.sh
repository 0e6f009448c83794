#!/usr/bin/env bash
# Runs the whole test suite: installs missing Debian packages, builds, starts a
# throw-away PostgreSQL on a free port, runs every test with CTest, stops it.
# Usage: ./scripts/test.sh [ctest args...]   (e.g. -L unit, -R io_)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install_deps
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
build_project "$BUILD_DIR"

PG_DIR="$(mktemp -d /tmp/ballistics-test-pg.XXXXXX)"
chmod 755 "$PG_DIR"
cleanup() { pg_stop "$PG_DIR/pg"; rm -rf "$PG_DIR"; }
trap cleanup EXIT
PG_EXTRA_OPTS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  pg_start "$PG_DIR/pg" "$(free_port 25432)"
export BALLISTICS_TEST_DATABASE_URL="$BALLISTICS_DATABASE_URL"
export BALLISTICS_PG_BIN="$PG_BIN"

log "running tests"
cd "$BUILD_DIR"
ctest --output-on-failure -j "${JOBS:-2}" --timeout 1500 "$@"

# Bounded fuzzing (docs/reliability.md, "Fuzzing"): a separate clang build of
# the libFuzzer targets, each run for BALLISTICS_FUZZ_SECONDS (default 20; 0
# skips it). Only with the whole suite, not when ctest filters were given.
if [ $# -eq 0 ] && [ "${BALLISTICS_FUZZ_SECONDS:-20}" != 0 ]; then
  "$REPO_ROOT/tests/fuzz/run_fuzz.sh" "${FUZZ_BUILD_DIR:-$BUILD_DIR/fuzz}" "${BALLISTICS_FUZZ_SECONDS:-20}"
fi
