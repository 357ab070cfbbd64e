"""LocalStack patch: resolve a JSON-path `SqsParameters.MessageGroupId` per event.

Why: EventBridge target parameters accept "dynamic path parameters": when the whole
value is a JSON path such as `$.detail.data.orderId`, AWS replaces it with that field of
the *original* event (before InputPath/InputTransformer) at delivery time. Our
`OrdersRule` relies on that for one FIFO message group per order. LocalStack 4.13.1
(`localstack/services/events/target.py`, `SqsTargetSender.send_event`) passes the literal
string as MessageGroupId, so every order would land in a single group locally.

What: `SqsTargetSender.process_event` gets a wrapper that resolves the path against the
event it receives (still untransformed) and hands the original code a shallow copy of
the sender whose target carries the resolved id. Only dot notation is supported
(`$.a.b-c.d_e`, alphanumerics, `-`, `_`); the value is converted to a string
(non-strings as JSON: `42`, `true`). If the path does not resolve (missing, null,
empty) the literal is used unchanged and a warning is logged. AWS does not document
that case; the literal keeps delivery working, which is the useful local behaviour.

Applied by the `localstack.hooks.on_infra_start` entry point in pyproject.toml, i.e. in
the LocalStack process at startup. Drop this once LocalStack resolves the path itself.
"""

from __future__ import annotations

import copy
import json
import logging
import re

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)

_DOT_PATH = re.compile(r"^\$(\.[A-Za-z0-9_-]+)+$")
_MISSING = object()


def resolve_dynamic_path(value, event):
    """The event's value at `value` if that is a `$.`-path that resolves, else `value`."""
    if not isinstance(value, str) or not _DOT_PATH.match(value):
        return value
    node = event
    for key in value[2:].split("."):
        node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING:
            break
    if node is _MISSING or node is None or node == "":
        event_id = event.get("id") if isinstance(event, dict) else "?"
        LOG.warning("dynamic path %s does not resolve in event %s; using it literally", value, event_id)
        return value
    return node if isinstance(node, str) else json.dumps(node, separators=(",", ":"))


@hooks.on_infra_start()
def orderflow_patch_sqs_dynamic_message_group_id():
    from localstack.services.events.target import SqsTargetSender
    from localstack.utils.patch import Patch

    if getattr(SqsTargetSender, "_orderflow_dynamic_group_id", False):
        return
    original = SqsTargetSender.process_event  # inherited from TargetSender

    def process_event(self, event, trace_header):
        params = self.target.get("SqsParameters") or {}
        group = params.get("MessageGroupId")
        resolved = resolve_dynamic_path(group, event)
        if resolved == group:
            return original(self, event, trace_header)
        # Senders are shared between concurrent deliveries: don't mutate self.target.
        # Touch the lazy boto client first so the copy reuses it.
        self.client  # noqa: B018
        sender = copy.copy(self)
        sender.target = {**self.target, "SqsParameters": {**params, "MessageGroupId": resolved}}
        return original(sender, event, trace_header)

    # Patch only the SQS sender class (Patch.function would patch the base TargetSender).
    Patch(SqsTargetSender, "process_event", process_event).apply()
    SqsTargetSender._orderflow_dynamic_group_id = True
    LOG.info("orderflow: EventBridge SQS targets resolve JSON-path MessageGroupId per event")
