"""LocalStack plugin: every AWS request a Lambda function makes is checked against its role.

Why: LocalStack community checks no IAM, so a missing permission (an outage on AWS) or an
extra one never shows locally. With this, a function's request that its deployed execution
role does not allow fails at request time with AWS's error, and is recorded for the report
(`python -m orderflow_local_lambda.iam_report`, run by `make test` after the e2e tests).

Identity: LocalStack gives each execution environment credentials from STS AssumeRole on the
function's role, with the function name as session name
(`localstack/services/lambda_/invocation/execution_environment.py`, `get_credentials`), as
Lambda does on AWS ("Lambda execution role", Lambda Developer Guide:
https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html). A request
signed with such a temporary key is looked up in moto's STS store (the assumed role) and
checked. Every other request - the tests' and CLI's `test` credentials, LocalStack's own
internal calls (event source mapping pollers, CloudFormation) - passes unchecked.

Policies: the role as deployed, read from LocalStack's IAM store at each request: inline
policies and attached managed policies (moto loads AWS's managed policy documents, e.g.
AWSLambdaBasicExecutionRole). Only identity-based policies are evaluated: no resource
policies (our queue policies grant only EventBridge), permission boundaries or SCPs.

Where: a handler in `serve_custom_service_request_handlers` of LocalStack's gateway chain
(`localstack/aws/app.py`), which runs after the request is parsed (service, operation,
parameters known) and before the provider acts, so a denied request changes nothing.
Errors are `CommonServiceException`s, which LocalStack serializes in the service's protocol.

Decisions are kept in memory (bounded) and served at `GET /_orderflow/iam`, each with the
request id LocalStack gave the request.

The same hook installs usage.py (every request and invocation, for cost reports).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from localstack.aws.api import CommonServiceException, RequestContext
from localstack.http import Request, Response
from localstack.runtime import hooks

from . import cfn_resources, usage
from .iam_policy import Statement, UnsupportedPolicy, evaluate, parse_policy
from .iam_requests import Unmapped, checks_for

LOG = logging.getLogger(__name__)

ROUTE = "/_orderflow/iam"
MAX_DECISIONS = 200_000  # a full e2e run makes a few thousand; bound memory anyway

# Error code and HTTP status of an authorization failure per service, as each protocol
# reports it: JSON services say AccessDeniedException (400), query services AccessDenied (403).
_DENIED = {
    "dynamodb": ("AccessDeniedException", 400),
    "events": ("AccessDeniedException", 400),
    "logs": ("AccessDeniedException", 400),
    "sqs": ("AccessDenied", 403),
    "ses": ("AccessDenied", 403),
    "cloudwatch": ("AccessDenied", 403),
    "sts": ("AccessDenied", 403),
}


@dataclass(frozen=True)
class Caller:
    account: str
    role_arn: str
    session: str  # LocalStack uses the function name

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def arn(self) -> str:
        partition = self.role_arn.split(":")[1]
        return f"arn:{partition}:sts::{self.account}:assumed-role/{self.role_name}/{self.session}"


class DecisionLog:
    def __init__(self, limit: int = MAX_DECISIONS):
        self._lock = threading.Lock()
        self._items: deque[dict] = deque(maxlen=limit)
        self.dropped = 0

    def add(self, decision: dict) -> None:
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(decision)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self._items)


DECISIONS = DecisionLog()
_callers: dict[str, Caller] = {}
_not_callers: set[str] = set()  # keys seen that are no role session (e.g. `test`)


def find_caller(access_key_id: str | None) -> Caller | None:
    """The assumed role behind a temporary access key, or None (not a role session).

    LocalStack hands out `LSIA...` keys where AWS has `ASIA...` (unless
    PARITY_AWS_ACCESS_KEY_ID), so look the key up instead of judging its prefix. A key exists
    before its first use, so a miss can be remembered.
    """
    if not access_key_id or access_key_id in _not_callers:
        return None
    if caller := _callers.get(access_key_id):
        return caller
    from moto.sts.models import sts_backends

    for backends in list(sts_backends.values()):
        for backend in list(backends.values()):
            assumed = backend.get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                caller = Caller(assumed.account_id, assumed.role_arn, assumed.session_name)
                _callers[access_key_id] = caller
                return caller
    if len(_not_callers) < 10_000:
        _not_callers.add(access_key_id)
    return None


def role_statements(caller: Caller) -> list[Statement]:
    """The role's inline and attached managed policies, as LocalStack's IAM holds them now."""
    from moto.iam.models import iam_backends

    partition = caller.role_arn.split(":")[1]
    role = iam_backends[caller.account][partition].get_role(caller.role_name)
    statements: list[Statement] = []
    for name, document in role.policies.items():
        statements += parse_policy(name, document)
    for arn, managed in role.managed_policies.items():
        version = next(v for v in managed.versions if v.version_id == managed.default_version_id)
        statements += parse_policy(arn, version.document)
    return statements


def _deny(context: RequestContext, message: str) -> CommonServiceException:
    code, status = _DENIED.get(context.service.service_name, ("AccessDeniedException", 400))
    return CommonServiceException(code, message, status_code=status, sender_fault=True)


def authorize(context: RequestContext) -> None:
    """Raise AWS's access-denied error if the calling function's role does not allow this."""
    if context.is_internal_call or context.service is None or context.operation is None:
        return
    from localstack.utils.aws.request_context import extract_access_key_id_from_auth_header

    caller = find_caller(extract_access_key_id_from_auth_header(context.request.headers))
    if caller is None:
        return
    service, operation = context.service.service_name, context.operation.name
    base = {
        "time": time.time(),
        # One request can make several checks (a transaction over two tables): the id lets a
        # reader count requests, not checks.
        "request_id": getattr(context, "request_id", None),
        "function": caller.session,
        "role": caller.role_name,
        "role_arn": caller.role_arn,
        "operation": f"{service}:{operation}",
    }
    try:
        checks = checks_for(service, operation, context.service_request or {}, context.region, context.account_id)
    except Unmapped as unmapped:
        message = (
            f"User: {caller.arn} is not authorized to perform: {unmapped} because Orderflow's local IAM "
            "enforcement has no mapping for this operation (add AWS's documented action and resource "
            "to orderflow_local_lambda/iam_requests.py)"
        )
        DECISIONS.add(
            {**base, "action": str(unmapped), "resource": "", "allowed": False, "reason": "unmapped",
             "message": message}
        )
        LOG.warning("orderflow IAM: denied %s", message)
        raise _deny(context, message) from None

    try:
        statements = role_statements(caller)
    except Exception as e:  # noqa: BLE001 - role gone or unreadable: deny, as AWS would fail closed
        statements, problem = [], f"cannot read role {caller.role_arn}: {e}"
    else:
        problem = None

    denial = None
    for check in checks:
        record = {**base, "action": check.action, "resource": check.resource, "context": check.context}
        try:
            decision = evaluate(statements, check.action, check.resource, check.context) if problem is None else None
        except UnsupportedPolicy as e:
            decision, problem = None, f"the role's policy uses something the local evaluator does not support: {e}"
        denied_on = f"User: {caller.arn} is not authorized to perform: {check.action} on resource: {check.resource}"
        if decision is None:
            message = f"{denied_on} because {problem}"
            DECISIONS.add({**record, "allowed": False, "reason": "unsupported", "message": message})
            denial = denial or message
            continue
        entry = {
            **record,
            "allowed": decision.allowed,
            "reason": "allowed" if decision.allowed else ("explicit" if decision.explicit_deny else "implicit"),
            "statements": [s.label for s in decision.allowing],
            "denied_by": [s.label for s in decision.denying],
        }
        if not decision.allowed:
            # Wording of AWS's messages: IAM User Guide, "Troubleshoot access denied error
            # messages" (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html).
            why = (
                "with an explicit deny in an identity-based policy"
                if decision.explicit_deny
                else f"because no identity-based policy allows the {check.action} action"
            )
            entry["message"] = f"{denied_on} {why}"
            denial = denial or entry["message"]
        DECISIONS.add(entry)
    if denial is not None:
        LOG.warning("orderflow IAM: denied %s", denial)
        raise _deny(context, denial)


def _enforce_handler(chain, context: RequestContext, response: Response) -> None:
    authorize(context)


def _decisions_endpoint(request: Request, **_kwargs) -> Response:
    since = float(request.args.get("since") or 0)
    decisions = [d for d in DECISIONS.snapshot() if d["time"] >= since]
    return Response.for_json({"decisions": decisions, "dropped": DECISIONS.dropped})


@hooks.on_infra_start()
def orderflow_enforce_lambda_iam():
    from localstack.aws import handlers
    from localstack.services.edge import ROUTER

    custom = handlers.serve_custom_service_request_handlers
    if _enforce_handler in custom.handlers:
        return
    custom.append(_enforce_handler)
    ROUTER.add(ROUTE, endpoint=_decisions_endpoint, methods=["GET"])
    LOG.info("orderflow: Lambda functions' AWS requests are checked against their execution roles (%s)", ROUTE)
    usage.install()
    cfn_resources.install()
