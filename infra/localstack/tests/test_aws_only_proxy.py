"""infra/localstack/aws_only_proxy.py with a real upstream HTTP server on a free port.

What it must do: pass every request AWS would also answer through unchanged (method, path,
headers, body, status), refuse LocalStack's own endpoints with 403 and record each refusal.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parents[1] / "aws_only_proxy.py"
spec = importlib.util.spec_from_file_location("aws_only_proxy", PROXY)
aws_only_proxy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aws_only_proxy)


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = json.dumps({"path": self.path, "body": body.decode(),
                             "target": self.headers.get("X-Amz-Target"),
                             "lengths": self.headers.get_all("Content-Length")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST


def serve(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture()
def proxy(tmp_path):
    upstream = serve(ThreadingHTTPServer(("127.0.0.1", 0), Echo))
    refusals = tmp_path / "refusals.log"
    refusals.write_text("")
    handler = aws_only_proxy.make_handler(f"http://127.0.0.1:{upstream.server_port}", str(refusals))
    front = serve(ThreadingHTTPServer(("127.0.0.1", 0), handler))
    yield front.server_port, refusals
    front.shutdown()
    upstream.shutdown()


def test_aws_requests_pass_through_unchanged(proxy):
    port, refusals = proxy
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    # Two requests on one connection: the proxy keeps HTTP/1.1 connections open, as SDKs expect.
    # The AWS SDK for Rust spells it content-length, botocore Content-Length: either way the
    # upstream must get exactly one (two make LocalStack answer 400).
    for n, length_header in enumerate(["content-length", "Content-Length"]):
        body = json.dumps({"QueueName": f"q{n}"})
        connection.putrequest("POST", "/")
        connection.putheader("X-Amz-Target", "AmazonSQS.GetQueueUrl")
        connection.putheader(length_header, str(len(body)))
        connection.endheaders(body.encode())
        response = connection.getresponse()
        echoed = json.loads(response.read())
        assert response.status == 200
        assert echoed == {"path": "/", "body": body, "target": "AmazonSQS.GetQueueUrl",
                          "lengths": [str(len(body))]}
    assert refusals.read_text() == ""


@pytest.mark.parametrize("path", ["/_aws/ses?email=a%40b.c", "/_localstack/health", "/_orderflow/usage?since=0",
                                  "/_extension/x"])
def test_localstack_only_endpoints_are_refused_and_recorded(proxy, path):
    port, refusals = proxy
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 403
    assert b"LocalStack-only" in response.read()
    assert refusals.read_text().strip().endswith(f"GET {path}")


def test_a_path_that_only_starts_like_an_internal_one_passes():
    assert not aws_only_proxy.is_refused("/_awsome")
    assert not aws_only_proxy.is_refused("/000000000000/orderflow-test-payment")
    assert aws_only_proxy.is_refused("/_aws/ses")
