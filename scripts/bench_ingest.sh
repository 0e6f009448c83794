#!/usr/bin/env bash
# Ingest benchmark (docs/benchmarks.md, "Ingest"): builds bench/ingest_bench,
# starts a throw-away PostgreSQL with default (durable) settings on a free port,
# runs the benchmark against it, then times `ballisticsctl ingest` of all Fadul
# scans with one thread (CPU time of the client and of the server backends).
# Usage: ./scripts/bench_ingest.sh     (BUILD_DIR=... to use another build dir)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
DATA="$REPO_ROOT/../shared/data"
[ -d "$DATA/fadul" ] || die "sample scans not found at $DATA/fadul"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building ingest_bench and ballisticsctl in $BUILD_DIR"
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja >/dev/null
  cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target ingest_bench ballisticsctl
fi

PG_DIR="$(mktemp -d /tmp/ballistics-bench-pg.XXXXXX)"
chmod 755 "$PG_DIR"
cleanup() { pg_stop "$PG_DIR/pg"; rm -rf "$PG_DIR"; }
trap cleanup EXIT
pg_start "$PG_DIR/pg" "$(free_port 35432)"

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD_DIR/bench/ingest_bench"

log "ballisticsctl ingest of all Fadul scans, one thread"
"$BUILD_DIR/src/cli/ballisticsctl" db migrate >/dev/null
# Server CPU in clock ticks: the postmaster's own and its reaped children's
# (utime, stime, cutime, cstime: the client's backend has exited by the end) plus
# the live children's (checkpointer, WAL writer, ...).
server_ticks() {
  local pm total pid
  pm=$(head -1 "$PG_DIR/pg/data/postmaster.pid")
  total=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}')
  for pid in $(pgrep -P "$pm"); do
    [ -r "/proc/$pid/stat" ] && total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
before=$(server_ticks)
TIMEFORMAT="client: %R s wall, %U s user, %S s sys"
time "$BUILD_DIR/src/cli/ballisticsctl" ingest "$DATA"/fadul/*.x3p --agency bench --case bench \
  --calibre "9mm Luger" --threads 1 >/dev/null
after=$(server_ticks)
echo "server: $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}') s CPU (all postgres processes of the cluster)"
echo "scans: $(ls "$DATA"/fadul/*.x3p | wc -l)"
