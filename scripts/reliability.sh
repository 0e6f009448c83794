#!/usr/bin/env bash
# Reproduces docs/reliability.md "Faults", "Load" and "Security" with one command each:
#   ./scripts/reliability.sh faults     fault_test (PostgreSQL restarts, SIGKILL, read-only, disk full)
#   ./scripts/reliability.sh security   security_test (tokens, roles, agencies, injection, oversize, slow-loris, audit anchor)
#   ./scripts/reliability.sh load [CLIENTS SECONDS MIX]   ballistics_loadgen against a fresh ballisticsd
#   ./scripts/reliability.sh all
# Builds into $BUILD_DIR (default build/), starts a private PostgreSQL on a free
# port and stops it at the end. SKIP_BUILD=1 reuses the build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

what="${1:-all}"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target ballisticsd ballisticsctl ballistics_loadgen fault_test security_test
fi

WORK="$(mktemp -d /tmp/ballistics-reliability.XXXXXX)"
chmod 755 "$WORK"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  pg_stop "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT
PG_EXTRA_OPTS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  pg_start "$WORK/pg" "$(free_port 26432)"
export BALLISTICS_TEST_DATABASE_URL="$BALLISTICS_DATABASE_URL"
export BALLISTICS_PG_BIN="$PG_BIN"

run_faults() { log "faults"; "$BUILD_DIR/tests/reliability/fault_test"; }
run_security() { log "security"; "$BUILD_DIR/tests/reliability/security_test"; }

# Load: ballisticsd with its default limits (or LOAD_SERVER_FLAGS), an examiner
# token made by the CLI at bootstrap, then the generator.
run_load() {
  local clients="${1:-8}" seconds="${2:-30}" mix="${3:-1:1}"
  log "load: $clients clients, $seconds s, mix upload:search $mix"
  local url="$BALLISTICS_DATABASE_URL"
  "$BUILD_DIR/src/cli/ballisticsctl" db migrate --database-url "$url" >/dev/null
  "$BUILD_DIR/src/cli/ballisticsctl" admin create-agency "Load Agency" --database-url "$url" >/dev/null 2>&1 || true
  local token
  token="$("$BUILD_DIR/src/cli/ballisticsctl" admin create-token --agency "Load Agency" --role examiner \
    --holder loadgen --database-url "$url" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  rm -f "$WORK/port"
  # shellcheck disable=SC2086
  "$BUILD_DIR/src/server/ballisticsd" --database-url "$url" --listen 127.0.0.1:0 --insecure \
    --metrics-listen 127.0.0.1:0 --port-file "$WORK/port" --log-level warn ${LOAD_SERVER_FLAGS:-} \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 600); do [ -s "$WORK/port" ] && break; sleep 0.1; done
  [ -s "$WORK/port" ] || { cat "$WORK/server.log"; die "ballisticsd did not start"; }
  read -r port mport <"$WORK/port"
  "$BUILD_DIR/bench/ballistics_loadgen" --server "127.0.0.1:$port" --insecure --token "$token" \
    --file "$REPO_ROOT/../shared/data/fadul/fadul-1-1.x3p" --clients "$clients" --seconds "$seconds" \
    --mix "$mix" --metrics "127.0.0.1:$mport" ${LOADGEN_FLAGS:-}
  kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
}

case "$what" in
  faults) run_faults ;;
  security) run_security ;;
  load) shift; run_load "$@" ;;
  all) run_faults; run_security; run_load ;;
  *) die "usage: $0 faults|security|load [CLIENTS SECONDS MIX]|all" ;;
esac
