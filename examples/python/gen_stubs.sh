#!/usr/bin/env bash
# Generates the Python stubs of the API into $1 (default: ./gen) with Debian's
# protoc and grpc_python_plugin, which match the installed python3-grpcio and
# python3-protobuf (Debian's python3-grpc-tools is too old for them).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE/gen}"
PROTO="$HERE/../../proto"
mkdir -p "$OUT"
protoc -I "$PROTO" --python_out="$OUT" --grpc_python_out="$OUT" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$PROTO"/ballistics/v1/*.proto
# Package markers so "from ballistics.v1 import ..." works.
touch "$OUT/ballistics/__init__.py" "$OUT/ballistics/v1/__init__.py"
echo "$OUT"
