"""What a load run used, for `orderflow load --cost`: every AWS request and every invocation.

Why here and not LocalStack's own log: `localstack.log` has a line per request from outside
LocalStack only. The requests LocalStack makes for a service on AWS's side - the event source
mapping pollers' ReceiveMessage/DeleteMessageBatch (which AWS bills to the queue owner),
EventBridge delivering to its SQS targets - are internal calls, logged at
`localstack.request.internal`, which is WARNING by default (`localstack/logging/setup.py`).
A response handler in the gateway chain sees both kinds, once per request.

Each request record says who made it - a function (its role session, as in
iam_enforcer.py), a service on AWS's side (the internal call's service principal, e.g.
`lambda` for event source mappings), or another client (the tests' and CLI's `test`
credentials) - and the facts its bill depends on that only the request or response shows:
items in a batch or transaction, DynamoDB item sizes, SQS payload bytes, email recipients.
Pricing is the CLI's job (functions/cli/src/cost.rs).

Invocations are recorded by the executor (executor.py) with the numbers of its REPORT line.
Both are served at `GET /_orderflow/usage?since=<epoch seconds>`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from decimal import Decimal, InvalidOperation

LOG = logging.getLogger(__name__)

ROUTE = "/_orderflow/usage"
MAX_RECORDS = 500_000  # a 1000-order run makes about 100 000 requests; bound memory anyway


class BoundedLog:
    def __init__(self, limit: int = MAX_RECORDS):
        self._lock = threading.Lock()
        self._items: deque[dict] = deque(maxlen=limit)
        self.dropped = 0

    def add(self, record: dict) -> None:
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(record)

    def since(self, since: float) -> list[dict]:
        with self._lock:
            return [r for r in self._items if r["time"] >= since]


REQUESTS = BoundedLog()
INVOCATIONS = BoundedLog()


# ---------------------------------------------------------------- DynamoDB item sizes
# Rules of "Item sizes and formats" (DynamoDB Developer Guide,
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
# attribute names count their UTF-8 bytes; strings their UTF-8 bytes; binaries their bytes;
# numbers about one byte per two significant digits plus one; null and booleans one byte;
# lists and maps three bytes plus one per element, plus their elements; sets their elements.
def _number_size(text: str) -> int:
    try:
        digits = Decimal(text).normalize().as_tuple().digits
    except InvalidOperation:
        return len(text)
    significant = len("".join(map(str, digits)).strip("0")) or 1
    return (significant + 1) // 2 + 1


def value_size(value: dict) -> int:
    (kind, v), *_ = value.items() if value else [("NULL", True)]
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(v)
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_size(n) for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in v.items())
    return 0


def item_size(item: dict | None) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


# ---------------------------------------------------------------- what each request's bill depends on
def _dynamodb_facts(operation: str, request: dict, response: dict) -> dict:
    """`writes`: one entry per item written, its size in bytes (0 when the request does not show
    it: updates, deletes, condition checks); `read_bytes` and `consistent` for reads."""
    if operation == "PutItem":
        return {"writes": [item_size(request.get("Item"))]}
    if operation in ("UpdateItem", "DeleteItem"):
        return {"writes": [0]}
    if operation == "BatchWriteItem":
        writes = [
            item_size((w.get("PutRequest") or {}).get("Item"))
            for table_writes in (request.get("RequestItems") or {}).values()
            for w in table_writes
        ]
        return {"writes": writes}
    if operation == "TransactWriteItems":
        writes = [item_size((t.get("Put") or {}).get("Item")) for t in request.get("TransactItems") or []]
        return {"writes": writes}
    if operation == "GetItem":
        return {"read_bytes": item_size(response.get("Item")), "consistent": bool(request.get("ConsistentRead"))}
    if operation in ("Query", "Scan"):
        return {
            "read_bytes": sum(item_size(i) for i in response.get("Items") or []),
            "consistent": bool(request.get("ConsistentRead")),
        }
    if operation == "BatchGetItem":
        items = [i for table_items in (response.get("Responses") or {}).values() for i in table_items]
        return {"read_items": [item_size(i) for i in items]}
    return {}


def _bytes(text: str | None) -> int:
    return len((text or "").encode())


def facts(service: str, operation: str, request: dict | None, response: dict | None) -> dict:
    request, response = request or {}, response or {}
    if service == "dynamodb":
        return _dynamodb_facts(operation, request, response)
    if service == "events" and operation == "PutEvents":
        return {"entries": len(request.get("Entries") or [])}
    if service == "sqs":
        if operation == "SendMessage":
            return {"payload_bytes": _bytes(request.get("MessageBody"))}
        if operation == "SendMessageBatch":
            entries = request.get("Entries") or []
            return {"entries": len(entries), "payload_bytes": sum(_bytes(e.get("MessageBody")) for e in entries)}
        if operation == "ReceiveMessage":
            messages = response.get("Messages") or []
            return {"entries": len(messages), "payload_bytes": sum(_bytes(m.get("Body")) for m in messages)}
        if operation in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch"):
            return {"entries": len(request.get("Entries") or [])}
    if service == "ses" and operation in ("SendEmail", "SendRawEmail"):
        destination = request.get("Destination") or {}
        recipients = sum(len(destination.get(k) or []) for k in ("ToAddresses", "CcAddresses", "BccAddresses"))
        return {"recipients": recipients or len(request.get("Destinations") or []) or 1}
    return {}


def who(context) -> tuple[str, str]:
    """(kind, name): ("function", its name), ("service", the principal on whose behalf LocalStack
    called) or ("client", "")."""
    if context.is_internal_call:
        principal = (context.internal_request_params or {}).get("service_principal") or "localstack"
        return "service", str(principal)
    from localstack.utils.aws.request_context import extract_access_key_id_from_auth_header

    from .iam_enforcer import find_caller

    caller = find_caller(extract_access_key_id_from_auth_header(context.request.headers))
    return ("function", caller.session) if caller else ("client", "")


_CALLER = "_orderflow_caller"


def _request_handler(chain, context, response) -> None:
    # Who is asked before the provider runs: some providers rewrite the Authorization header
    # (DynamoDB's, for DynamoDB Local) before the response handlers see the request.
    if context.service is not None:
        setattr(context, _CALLER, who(context))


def record_request(context, response) -> None:
    if context.service is None or context.operation is None:
        return
    service, operation = context.service.service_name, context.operation.name
    kind, name = getattr(context, _CALLER, None) or who(context)
    REQUESTS.add(
        {
            "time": time.time(),
            "request_id": context.request_id,
            "service": service,
            "operation": operation,
            "caller_kind": kind,
            "caller": name,
            "status": getattr(response, "status_code", 0),
            **facts(service, operation, context.service_request, context.service_response),
        }
    )


def _response_handler(chain, context, response) -> None:
    try:
        record_request(context, response)
    except Exception:  # a bookkeeping failure must not fail the request
        LOG.exception("orderflow usage: cannot record a request")


def record_invocation(function: str, request_id: str, duration_ms: float, init_ms: float | None,
                      memory_mb: int, status: str) -> None:
    INVOCATIONS.add(
        {
            "time": time.time(),
            "function": function,
            "request_id": request_id,
            "duration_ms": duration_ms,
            "init_ms": init_ms,
            "memory_mb": memory_mb,
            "status": status,
        }
    )


def _usage_endpoint(request, **_kwargs):
    from localstack.http import Response

    since = float(request.args.get("since") or 0)
    return Response.for_json(
        {
            "requests": REQUESTS.since(since),
            "invocations": INVOCATIONS.since(since),
            "dropped": REQUESTS.dropped + INVOCATIONS.dropped,
        }
    )


def install() -> None:
    """Called from iam_enforcer's on_infra_start hook (one hook installs both plugins' parts)."""
    from localstack.aws import handlers
    from localstack.services.edge import ROUTER

    custom = handlers.run_custom_response_handlers
    if _response_handler in custom.handlers:
        return
    handlers.serve_custom_service_request_handlers.append(_request_handler)
    custom.append(_response_handler)
    ROUTER.add(ROUTE, endpoint=_usage_endpoint, methods=["GET"])
    LOG.info("orderflow: AWS requests and Lambda invocations are recorded for cost reports (%s)", ROUTE)
