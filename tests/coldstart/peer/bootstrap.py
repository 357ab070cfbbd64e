"""The Python peer's runtime: the smallest Lambda runtime-interface loop.

Like the managed python3.11 runtime it imports the handler module (the function's init) and
then polls the Runtime API for the next invocation; that first poll is where the cold-start
benchmark stops the clock. Deliberately minimal (standard library only, no awslambdaric), so
the peer's number is a lower bound for Python: the comparison does not flatter Rust.
"""

import http.client
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
module_name, _, function_name = os.environ.get("_HANDLER", "handler.handler").rpartition(".")
handler = getattr(importlib.import_module(module_name), function_name)

BASE = "/2018-06-01/runtime/invocation"


class Context:
    """What Powertools reads from the Lambda context."""

    def __init__(self, request_id, deadline_ms):
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.invoked_function_arn = ""
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        import time

        return max(0, self._deadline_ms - int(time.time() * 1000))


connection = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
while True:
    connection.request("GET", f"{BASE}/next")
    response = connection.getresponse()
    event = json.loads(response.read())
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id", "")
    deadline = int(response.getheader("Lambda-Runtime-Deadline-Ms", "0"))
    result = handler(event, Context(request_id, deadline))
    connection.request("POST", f"{BASE}/{request_id}/response", json.dumps(result))
    connection.getresponse().read()
