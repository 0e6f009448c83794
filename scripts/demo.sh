#!/usr/bin/env bash
# The main job, end to end: installs missing Debian packages, builds, starts the
# embedded PostgreSQL (a cluster of the project's own in var/pg, kept between
# runs) unless --database-url points at an existing server, ingests the sample
# scans and prints what was stored.
# Usage: ./scripts/demo.sh [--database-url URL] [--keep-running]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DB_URL=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --database-url) DB_URL="$2"; shift 2 ;;
    --keep-running) KEEP=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done

install_deps
build_project "$REPO_ROOT/build"
CTL="$REPO_ROOT/build/src/cli/ballisticsctl"
DATA="$REPO_ROOT/../shared/data"
[ -d "$DATA/fadul" ] || die "sample scans not found at $DATA/fadul"

if [ -z "$DB_URL" ]; then
  PG_DIR="$REPO_ROOT/var/pg"
  [ $KEEP -eq 1 ] || trap 'pg_stop "$PG_DIR"' EXIT
  pg_start "$PG_DIR" "$(free_port 15432)"
  DB_URL="$BALLISTICS_DATABASE_URL"
fi
export BALLISTICS_DATABASE_URL="$DB_URL"

log "inspecting one scan"
"$CTL" inspect "$DATA/fadul/fadul-1-1.x3p"
