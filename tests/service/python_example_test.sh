#!/usr/bin/env bash
# The Python example (examples/python) against a real ballisticsd with TLS (a
# self-signed pair made here with openssl), plus gRPC health checking and server
# reflection through raw calls, a plaintext client refused by the TLS server, and
# ballisticsctl search / review decide / leads over the same TLS connection.
# Usage: python_example_test.sh BALLISTICSD BALLISTICSCTL SOURCE_DIR SHARED_DATA_DIR
set -euo pipefail
D="$1"; CTL="$2"; SRC="$3"; DATA="$4"
PY=/usr/bin/python3   # Debian's python3-grpcio and python3-protobuf live there
[ -n "${BALLISTICS_TEST_DATABASE_URL:-}" ] || { echo "BALLISTICS_TEST_DATABASE_URL is not set"; exit 1; }
TMP="$(mktemp -d /tmp/ballistics_pyex.XXXXXX)"
DB="ballistics_pyex_$$"
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  psql "$BALLISTICS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
psql "$BALLISTICS_TEST_DATABASE_URL" -qc "CREATE DATABASE $DB"
export BALLISTICS_DATABASE_URL="$($PY -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/'"$DB"'")))' "$BALLISTICS_TEST_DATABASE_URL")"

"$CTL" db migrate >/dev/null
"$CTL" admin create-agency "Lab A" >/dev/null
TOKEN="$("$CTL" admin create-token --agency "Lab A" --role examiner --holder py-example 2>/dev/null)"

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/server.key" -out "$TMP/server.crt" -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
"$D" --listen 127.0.0.1:0 --tls-cert "$TMP/server.crt" --tls-key "$TMP/server.key" --port-file "$TMP/port" \
  >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 600); do [ -s "$TMP/port" ] && break; kill -0 "$PID" 2>/dev/null || { cat "$TMP/server.log"; exit 1; }; sleep 0.1; done
PORT="$(cut -d' ' -f1 "$TMP/port")"
[ -n "$PORT" ] || { echo "server did not start"; cat "$TMP/server.log"; exit 1; }

"$SRC/examples/python/gen_stubs.sh" "$TMP/gen" >/dev/null
export BALLISTICS_PY_STUBS="$TMP/gen"
OUT="$("$PY" "$SRC/examples/python/client.py" --server "localhost:$PORT" --token "$TOKEN" --ca-cert "$TMP/server.crt" \
  --case K-1 --calibre "9mm Luger" "$DATA/fadul/fadul-1-1.x3p" "$DATA/fadul/fadul-2-1.x3p" \
  "$DATA/fadul/fadul-1-2.x3p" "$DATA/fadul/fadul-3-1.x3p")"
echo "$OUT"
echo "$OUT" | grep -q "stored: .*fadul-1-1.x3p -> casing" || { echo "FAIL: upload"; exit 1; }
# Of the three other casings only fadul-1-2 shares fadul-1-1's slide: it must rank first.
echo "$OUT" | grep -Eq "^ +1 +[0-9]+ +Lab A +K-1 +fadul-1-2 " || { echo "FAIL: mate not ranked first"; exit 1; }

# Health and reflection through raw calls (no extra Python packages needed).
"$PY" - "$PORT" "$TMP/server.crt" <<'PYEOF'
import sys, grpc
port, crt = sys.argv[1], open(sys.argv[2], "rb").read()
ch = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(root_certificates=crt))
ident = lambda b: b
health = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident, response_deserializer=ident)
resp = health(b"", timeout=10)
assert resp == b"\x08\x01", f"health: {resp!r} is not SERVING"
refl = ch.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                        request_serializer=ident, response_deserializer=ident)
# ServerReflectionRequest{list_services: ""} = field 7, length 0.
listing = b"".join(refl(iter([b"\x3a\x00"]), timeout=10))
for svc in (b"ballistics.v1.IngestService", b"ballistics.v1.SearchService", b"grpc.health.v1.Health"):
    assert svc in listing, f"reflection does not list {svc!r}: {listing!r}"
plain = grpc.insecure_channel(f"127.0.0.1:{port}")
try:
    plain.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident, response_deserializer=ident)(b"", timeout=5)
    raise SystemExit("FAIL: a plaintext call to the TLS server succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.UNAVAILABLE, e.code()
print("health SERVING, reflection lists the services, plaintext refused")
PYEOF

# The CLI over TLS: search, decide a hit on the best candidate, see the lead.
API=(--server "localhost:$PORT" --ca-cert "$TMP/server.crt" --token "$TOKEN")
"$CTL" search --casing 1 --top 3 --json "${API[@]}" >"$TMP/search.json"
read -r CMP TARGET < <("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["combined"][0]; print(c["comparison_id"], c["casing_id"])' "$TMP/search.json")
[ "$TARGET" = 3 ] || { echo "FAIL: ballisticsctl search: best candidate $TARGET is not casing 3 (fadul-1-2)"; exit 1; }
"$CTL" review decide "$CMP" --outcome hit --notes "same slide" "${API[@]}" | grep -q "lead" \
  || { echo "FAIL: review decide made no lead"; exit 1; }
"$CTL" leads --casing 1 "${API[@]}" >"$TMP/leads.json"
"$PY" -c 'import json,sys; g=json.load(open(sys.argv[1])); ids=sorted(c["casing_id"] for c in g["casings"]); assert ids==[1,3], ids; assert len(g["leads"])==1' "$TMP/leads.json" \
  || { echo "FAIL: leads"; exit 1; }
echo "ballisticsctl search / review decide / leads over TLS: ok"
SEARCH_ID="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["search_id"])' "$TMP/search.json")"
"$CTL" report --search "$SEARCH_ID" --out "$TMP/report.html" --top 2 "${API[@]}"
# Self-contained: two candidates x (query, candidate, overlay, cell map) inline PNGs, nothing fetched from elsewhere.
[ "$(grep -o 'src="data:image/png;base64,' "$TMP/report.html" | wc -l)" -eq 8 ] || { echo "FAIL: report images"; exit 1; }
! grep -Eq '(src|href)="(http|//|/)' "$TMP/report.html" || { echo "FAIL: report references external resources"; exit 1; }
"$PY" - "$TMP/report.html" <<'PYEOF'
import base64, re, sys
html = open(sys.argv[1]).read()
for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
    png = base64.b64decode(b64)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert w > 100 and h > 100, (w, h)
print("report: 8 inline PNGs, no external resources")
PYEOF
# Rendered by headless Chromium (no network, no GPU): the screenshot has the
# window's size and is not blank (a blank page decodes to a handful of byte values).
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --user-data-dir="$TMP/chrome" \
  --window-size=1280,2000 --screenshot="$TMP/report.png" "file://$TMP/report.html" >"$TMP/chrome.log" 2>&1 \
  || { cat "$TMP/chrome.log"; echo "FAIL: chromium"; exit 1; }
"$PY" - "$TMP/report.png" <<'PYEOF'
import sys, zlib
png = open(sys.argv[1], "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG"
w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
assert (w, h) == (1280, 2000), (w, h)
idat, i = b"", 8
while i < len(png):
    n = int.from_bytes(png[i:i + 4], "big")
    if png[i + 4:i + 8] == b"IDAT":
        idat += png[i + 8:i + 8 + n]
    i += 12 + n
raw = zlib.decompress(idat)
distinct = len(set(raw[::7]))
assert distinct > 100, f"screenshot looks blank ({distinct} distinct byte values)"
print(f"report rendered by chromium: {w}x{h}, {distinct} distinct byte values")
PYEOF

kill -TERM "$PID"
wait "$PID" && rc=0 || rc=$?
PID=""
[ "$rc" -eq 0 ] || { echo "FAIL: ballisticsd exited with $rc on SIGTERM"; cat "$TMP/server.log"; exit 1; }
echo "PASS"
