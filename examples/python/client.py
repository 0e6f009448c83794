#!/usr/bin/python3
"""Example client of the ballistics gRPC API: uploads scans, searches with the
first one, prints the candidates.

  ./gen_stubs.sh                      # once: Python stubs into ./gen
  ./client.py --server localhost:50051 --token $TOKEN --ca-cert server.crt \\
      --case K-1 --calibre "9mm Luger" scan1.x3p scan2.x3p ...

The token comes from `ballisticsctl admin create-token` (role examiner: uploads
and searches). --insecure talks plaintext to a loopback test server.
"""
import argparse
import hashlib
import os
import sys

import grpc

sys.path.insert(0, os.environ.get("BALLISTICS_PY_STUBS", os.path.join(os.path.dirname(__file__), "gen")))
from ballistics.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc, search_pb2, search_pb2_grpc  # noqa: E402

CHUNK = 1 << 20  # the server takes up to 4 MiB per message; 1 MiB chunks stream well


def upload_requests(path, args):
    data = open(path, "rb").read()
    sha = hashlib.sha256(data).hexdigest()
    meta = common_pb2.CasingMetadata(
        agency=args.agency, case_number=args.case, exhibit_id=os.path.splitext(os.path.basename(path))[0],
        calibre=args.calibre, source=common_pb2.TEST_FIRE)
    # client_request_id = the file's SHA-256: a retried upload returns the same casing.
    header = ingest_pb2.UploadHeader(metadata=meta, client_request_id=sha, file_name=os.path.basename(path),
                                     total_bytes=len(data), sha256_hex=sha)
    yield ingest_pb2.UploadScanRequest(header=header)
    for off in range(0, len(data), CHUNK):
        yield ingest_pb2.UploadScanRequest(chunk=data[off:off + CHUNK])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    p.add_argument("--server", default=os.environ.get("BALLISTICS_SERVER", "localhost:50051"))
    p.add_argument("--token", default=os.environ.get("BALLISTICS_TOKEN"))
    p.add_argument("--ca-cert", help="PEM certificate to trust (the server's self-signed one in the demo)")
    p.add_argument("--tls-server-name", help="name expected in the server certificate")
    p.add_argument("--insecure", action="store_true", help="plaintext (loopback test servers only)")
    p.add_argument("--agency", default="", help="default: the token's agency")
    p.add_argument("--case", required=True)
    p.add_argument("--calibre", required=True)
    p.add_argument("--top", type=int, default=10)
    args = p.parse_args()
    if not args.token:
        p.error("no token: --token or BALLISTICS_TOKEN")

    if args.insecure:
        channel = grpc.insecure_channel(args.server)
    else:
        roots = open(args.ca_cert, "rb").read() if args.ca_cert else None
        options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
        channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=roots), options)
    auth = [("authorization", "Bearer " + args.token)]

    ingest = ingest_pb2_grpc.IngestServiceStub(channel)
    ids = []
    for path in args.files:
        try:
            r = ingest.UploadScan(upload_requests(path, args), metadata=auth, timeout=600)
        except grpc.RpcError as e:
            print(f"rejected: {path}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 3
        print(f"{'already present' if r.already_existed else 'stored'}: {path} -> casing {r.casing_id}")
        ids.append(r.casing_id)

    search = search_pb2_grpc.SearchServiceStub(channel)
    result = None
    for update in search.Search(search_pb2.SearchRequest(casing_id=ids[0], top_n=args.top), metadata=auth,
                                timeout=600):
        if update.HasField("progress"):
            print(f"  {update.progress.stage:10s} {100 * update.progress.fraction_done:5.1f} %", file=sys.stderr)
        else:
            result = update.result
    print(f"search {result.search_id} for casing {result.query_casing_id}: {result.signatures_scanned} signatures "
          f"scanned, shards {result.shards_answered}/{result.shards_total}{' (PARTIAL)' if result.partial else ''}")
    print("rank  casing  agency        case        exhibit         CMC/cells  CCF    comparison")
    for c in result.breech_face:
        s = c.breech_face
        print(f"{c.rank:4d}  {c.casing_id:6d}  {c.agency[:12]:12s}  {c.case_number[:10]:10s}  {c.exhibit_id[:14]:14s}  "
              f"{s.cmc_count:3d}/{s.cell_count:<3d}    {s.ccf:5.3f}  {c.comparison_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
