#!/usr/bin/env python3
"""Generates docs/api.md from the comments in proto/ballistics/v1/*.proto.

Usage: scripts/gen_api_doc.py [--check]
  --check   exit 1 if docs/api.md differs from what would be generated (CI).

Comments directly above a service, rpc, message, enum, field or enum value
become its documentation; a file's leading comment becomes the section intro.
Deliberately small: it understands the subset of proto3 this API uses.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "ballistics" / "v1"
OUT = ROOT / "docs" / "api.md"
ORDER = ["common", "admin", "ingest", "search", "review", "leads", "registry", "shard"]

HEADER = """# API reference (gRPC, package `ballistics.v1`)

Generated from the comments in `proto/ballistics/v1/*.proto` by
`scripts/gen_api_doc.py`; edit the .proto files, not this page.

Every call carries `authorization: Bearer <token>` metadata (tokens come from
`ballisticsctl admin create-token`; only their SHA-256 is stored). A missing,
wrong, revoked or expired token is `UNAUTHENTICATED`; a role that may not make
the call, or another agency's records, `PERMISSION_DENIED`. Callers see their
own agency's records (and those of agencies sharing with it); admins see all.
The scoping is enforced in the service and again in PostgreSQL with row-level
security. Every call, refused ones included, appends a row to the hash-chained
audit trail (`ballisticsctl audit verify`). An optional `x-request-id`
metadata value is recorded there and echoed in the response headers.

The server also offers gRPC health checking (`grpc.health.v1.Health`) and
server reflection (`grpcurl -insecure localhost:50051 list`).

| role | may |
|---|---|
| technician | upload, read own agency's casings |
| examiner | + search, review, decide, read leads |
| agency_reader | read own agency's casings, searches, comparisons, leads |
| admin | manage agencies and tokens, verify the audit trail, read everything |

## Running it

```sh
ballisticsd --database-url URL --tls-cert server.crt --tls-key server.key \
            --listen 0.0.0.0:50051 --metrics-listen 127.0.0.1:9464
ballisticsctl admin create-agency MDSP --database-url URL            # bootstrap, on the database
ballisticsctl admin create-token --agency MDSP --role admin --holder ops --database-url URL
ballisticsctl admin create-token --agency MDSP --role examiner --holder "J. Doe" \
            --server host:50051 --ca-cert ca.pem --token $ADMIN_TOKEN     # later, through the API
ballisticsctl upload scans/*.x3p --case 24-123 --calibre "9mm Luger" --server ... --token ...
ballisticsctl search --casing 17 ; ballisticsctl review pending ; ballisticsctl review decide 42 --outcome hit
ballisticsctl leads --casing 17 ; ballisticsctl report --search 5 --out report.html
ballisticsctl admin share --owner MDSP --reader BCPD --database-url URL     # BCPD may read MDSP casings
ballisticsctl audit verify --database-url URL
```

- TLS is on unless `--insecure` (meant for loopback tests); the demo makes a
  self-signed pair with openssl. Clients pass `--ca-cert` (or trust system CAs).
- The same options go into a `--config` file as `key = value` lines.
- The server listens on 127.0.0.1 unless told otherwise; SIGTERM stops accepting
  calls, gives running ones `--shutdown-grace-s` seconds, then cancels them.
- Evidence is read and written as the PostgreSQL role `ballistics_app`
  (no superuser, no BYPASSRLS) with the caller's agency as a session setting;
  tokens and the audit trail only through the schema owner's connection
  (`db/migrations/0010_api_security.sql`).
- Metrics (`GET /metrics`, Prometheus text): `ballistics_grpc_requests_total{method,code}`,
  `ballistics_grpc_request_duration_seconds` (histogram), `ballistics_uploads_in_flight`,
  `ballistics_upload_bytes_total`, `ballistics_searches_running`, `ballistics_search_queue_depth`,
  `ballistics_index_signatures`, `ballistics_index_bytes`, the rerank cache
  (`ballistics_rerank_cache_bytes`, `_entries`, `_hits_total`, `_misses_total`,
  `_evictions_total`), `process_resident_memory_bytes`; shard workers serve their own
  (`--metrics-listen`, with `ballistics_shard_searches_total{phase}`): the table per role
  is in docs/operations.md, "Monitoring".
- Python: `examples/python` (stubs from `gen_stubs.sh`, Debian's python3-grpcio).

Known limits: the search index lives in the server's memory (loaded at start,
extended on upload), with a compact form of the signatures for the rerank within
`--rerank-cache-mb` (beyond it candidates are read from PostgreSQL; docs/search.md);
`MANUFACTURER_TEST_FIRE` is refused until the registry schema exists; the audit
chain detects edits and deletions inside the trail, but deleting the newest
rows is only detectable against a head hash kept outside the database
(`audit verify` prints it).
"""


def parse(text):
    """Yields (kind, name, signature, comment lines, depth) in file order, plus the file intro."""
    lines = text.splitlines()
    intro, i = [], 0
    while i < len(lines) and lines[i].startswith("//"):
        intro.append(lines[i][2:].strip())
        i += 1
    items, pending, depth = [], [], 0
    for raw in lines[i:]:
        line = raw.strip()
        if line.startswith("//"):
            pending.append(line[2:].strip())
            continue
        if not line:
            pending = []
            continue
        m = re.match(r"(service|message|enum)\s+(\w+)\s*\{", line)
        if m:
            items.append((m.group(1), m.group(2), "", pending, depth))
            depth += 1
        elif line.startswith("rpc "):
            m = re.match(r"rpc\s+(\w+)\s*\((.*?)\)\s*returns\s*\((.*?)\)", line)
            items.append(("rpc", m.group(1), f"({m.group(2)}) returns ({m.group(3)})", pending, depth))
        elif line.startswith("oneof "):
            depth += 1
        elif line.startswith("}"):
            depth -= 1
        elif "=" in line and depth > 0 and not line.startswith(("syntax", "package", "import", "option")):
            m = re.match(r"((?:repeated |optional )?[\w.]+)\s+(\w+)\s*=\s*(\d+)", line)
            if m:
                items.append(("field", m.group(2), m.group(1), pending, depth))
            else:
                m = re.match(r"(\w+)\s*=\s*(\d+)", line)
                if m:
                    items.append(("value", m.group(1), m.group(2), pending, depth))
        pending = []
    return intro, items


def render():
    out = [HEADER]
    for stem in ORDER:
        path = PROTO_DIR / f"{stem}.proto"
        intro, items = parse(path.read_text())
        out.append(f"\n## {path.name}\n")
        if intro:
            out.append(" ".join(intro) + "\n")
        in_table = False
        for kind, name, sig, comment, depth in items:
            doc = " ".join(comment)
            if kind in ("service", "message", "enum"):
                out.append(f"\n### {kind} `{name}`\n")
                if doc:
                    out.append(doc + "\n")
                in_table = False
            elif kind == "rpc":
                out.append(f"\n- **`{name}`** `{sig}`" + (f" — {doc}" if doc else ""))
            else:
                if not in_table:
                    out.append("\n| " + ("field | type" if kind == "field" else "value | number") + " | meaning |\n|---|---|---|")
                    in_table = True
                out.append(f"| `{name}` | `{sig}` | {doc.replace('|', '/')} |")
        out.append("")
    return "\n".join(out) + "\n"


def main():
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run scripts/gen_api_doc.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
