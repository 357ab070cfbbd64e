"""A proxy in front of LocalStack that refuses LocalStack's own endpoints.

    python infra/localstack/aws_only_proxy.py --port 4599 --upstream http://127.0.0.1:4566 \
        --refusals .local/aws-only-refusals.log

`make test` runs the AWS-mode e2e suite (`ORDERFLOW_TARGET=aws`, what `make test-aws` runs
against a real stage) through this proxy: every request an AWS API would also answer goes on
to LocalStack unchanged; a request for one of LocalStack's own endpoints (`/_aws/...` such as
the SES store, `/_localstack/...`, `/_orderflow/...` of the local Lambda executor, `/_extension/...`)
gets 403 and a line in the refusals file. tests/run.sh fails when that file is not empty, so
a test that reaches for a LocalStack-only hook without being in a `localstack_only` module
fails `make test`, even if it swallowed the error.

Standard library only (http.server, http.client): it forwards whole requests and responses
(Content-Length bodies, chunked request bodies de-chunked), which is all the AWS SDK for Rust
and the AWS CLI send here; no streaming APIs are used by the suite.
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# LocalStack's internal endpoints ("LocalStack internal endpoints",
# https://docs.localstack.cloud/references/internal-endpoints/) and the local executor's.
REFUSED_PREFIXES = ("/_aws/", "/_localstack/", "/_orderflow/", "/_extension/", "/_pods/")
# Hop-by-hop headers are not forwarded (RFC 9110, section 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "proxy-authenticate", "proxy-authorization"}


def is_refused(path: str) -> bool:
    return any(path.startswith(prefix) or path == prefix.rstrip("/") for prefix in REFUSED_PREFIXES)


def make_handler(upstream: str, refusals_path: str):
    target = urlsplit(upstream)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass

        def read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def refuse(self) -> None:
            with lock, open(refusals_path, "a") as refusals:
                refusals.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {self.command} {self.path}\n")
            body = (f"refused by aws_only_proxy: {self.path} is a LocalStack-only endpoint; "
                    "a test that needs it belongs in a `localstack_only` module\n").encode()
            self.send_response(403)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self) -> None:
            body = self.read_body()
            if is_refused(urlsplit(self.path).path):
                self.refuse()
                return
            # The body is forwarded whole, so its length is set anew (one Content-Length: a
            # second, differently spelled one makes the upstream answer 400).
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}
            headers["Content-Length"] = str(len(body))
            connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=120)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                # Only the upstream's own headers (no second Server or Date).
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except (OSError, http.client.HTTPException) as error:
                message = f"aws_only_proxy: upstream {upstream} failed: {error}\n".encode()
                self.send_response(502)
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)
            finally:
                connection.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = forward

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--refusals", required=True, help="file that gets one line per refused request")
    args = parser.parse_args()
    open(args.refusals, "w").close()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.upstream, args.refusals))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
