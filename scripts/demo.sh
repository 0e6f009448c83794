#!/usr/bin/env bash
# The main job, end to end: installs missing Debian packages, builds, starts the
# embedded PostgreSQL (a cluster of the project's own in var/pg, kept between
# runs) unless --database-url points at an existing server, applies the schema
# migrations, ingests the sample scans (../shared/data/fadul) and prints what
# was stored. Running it again stores nothing new (ingest is idempotent by the
# SHA-256 of each file) and says so.
# Usage: ./scripts/demo.sh [--database-url URL] [--keep-running]
#   BUILD_DIR=... to build elsewhere than build/; THREADS=N for ingest threads.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DB_URL=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --database-url) [ $# -ge 2 ] || die "--database-url needs a value"; DB_URL="$2"; shift 2 ;;
    --keep-running) KEEP=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done

install_deps
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
build_project "$BUILD_DIR"
CTL="$BUILD_DIR/src/cli/ballisticsctl"
DATA="$REPO_ROOT/../shared/data"
[ -d "$DATA/fadul" ] || die "sample scans not found at $DATA/fadul"

if [ -z "$DB_URL" ]; then
  PG_DIR="$REPO_ROOT/var/pg"
  # As root the cluster belongs to the postgres user, which must be able to reach
  # it: a checkout under /root (mode 700) is not reachable, so keep the cluster
  # in a directory of its own under /var/tmp instead.
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$REPO_ROOT/var"
    if ! runuser -u postgres -- test -x "$REPO_ROOT/var"; then
      PG_DIR="/var/tmp/ballistics-demo-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)/pg"
      log "user postgres cannot enter $REPO_ROOT/var; keeping the demo cluster in $PG_DIR"
      mkdir -p "$(dirname "$PG_DIR")"
      chmod 755 "$(dirname "$PG_DIR")"
    fi
  fi
  # A cluster left running by --keep-running is stopped first so it restarts on a free port.
  pg_stop "$PG_DIR"
  [ $KEEP -eq 1 ] || trap 'pg_stop "$PG_DIR"' EXIT
  pg_start "$PG_DIR" "$(free_port 15432)"
  DB_URL="$BALLISTICS_DATABASE_URL"
fi
export BALLISTICS_DATABASE_URL="$DB_URL"

log "inspecting one scan"
"$CTL" inspect "$DATA/fadul/fadul-1-1.x3p"

log "applying database migrations"
"$CTL" db migrate

log "ingesting $(ls "$DATA"/fadul/*.x3p | wc -l) Fadul scans (read, normalize, store; one transaction per file)"
"$CTL" ingest "$DATA"/fadul/*.x3p --agency "CSAFE" --case "Fadul-2011" --calibre "9mm Luger" \
  --source test-fire --submitted-by demo ${THREADS:+--threads "$THREADS"}

log "what is stored"
"$CTL" casings list
"$CTL" db status

if [ $KEEP -eq 1 ]; then
  log "PostgreSQL keeps running: export BALLISTICS_DATABASE_URL=$DB_URL"
fi
