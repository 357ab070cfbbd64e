"""What AWS authorizes for a request: (IAM action, resource ARN, condition keys) per check.

One API call can need several checks (a TransactWriteItems item per table and item action,
a PutEvents entry per bus and source); every one must be allowed. An operation missing here
raises `Unmapped`: the enforcer denies it and says so, rather than letting it through.

Sources, per service (AWS's own pages):
- DynamoDB: Service Authorization Reference, "Actions, resources, and condition keys for
  Amazon DynamoDB" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html),
  its "API operations" table: BatchGetItem -> dynamodb:BatchGetItem and BatchWriteItem ->
  dynamodb:BatchWriteItem on each table; TransactWriteItems -> the item actions
  (dynamodb:PutItem, UpdateItem, DeleteItem, ConditionCheckItem); TransactGetItems ->
  dynamodb:GetItem. Resource types `table` (arn:...:table/<name>) and `index`
  (arn:...:table/<name>/index/<index>): a Query or Scan with IndexName is on the index.
- EventBridge: "Using IAM policy conditions in Amazon EventBridge"
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-conditions.html):
  events:PutEvents on the event bus ARN, with `events:source` and `events:detail-type`
  of each entry.
- SQS: "Amazon SQS API permissions: Actions and resource reference"
  (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html)
  - the queue ARN; and "Amazon SQS batch actions" (.../sqs-batch-api.html): the batch
  operations are authorized as SendMessage / DeleteMessage / ChangeMessageVisibility.
- SES: "Identity and access management in Amazon SES"
  (https://docs.aws.amazon.com/ses/latest/dg/control-user-access.html): ses:SendEmail /
  ses:SendRawEmail on the sending identity, with `ses:FromAddress`, `ses:Recipients`,
  `ses:FromDisplayName`.
- CloudWatch: "Using condition keys to limit access to CloudWatch namespaces"
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html):
  cloudwatch:PutMetricData on `*` with `cloudwatch:namespace`.
- CloudWatch Logs: Service Authorization Reference "Amazon CloudWatch Logs": log-group and
  log-stream ARNs.
- STS GetCallerIdentity: "No permissions are required to perform this operation"
  (STS API reference, GetCallerIdentity) - no check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr
from urllib.parse import urlparse


class Unmapped(Exception):
    """An operation whose authorization we have not mapped: denied, loudly."""


@dataclass(frozen=True)
class Check:
    action: str
    resource: str
    context: dict = field(default_factory=dict, hash=False, compare=False)


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class _Arns:
    def __init__(self, region: str, account: str):
        self.region, self.account, self.partition = region, account, _partition(region)

    def arn(self, service: str, resource: str, region: str | None = None, account: str | None = None) -> str:
        region = self.region if region is None else region
        account = self.account if account is None else account
        return f"arn:{self.partition}:{service}:{region}:{account}:{resource}"


# ------------------------------------------------------------------------------ DynamoDB
_DDB_SINGLE_TABLE = {
    "GetItem": "dynamodb:GetItem",
    "PutItem": "dynamodb:PutItem",
    "UpdateItem": "dynamodb:UpdateItem",
    "DeleteItem": "dynamodb:DeleteItem",
    "Query": "dynamodb:Query",
    "Scan": "dynamodb:Scan",
    "DescribeTable": "dynamodb:DescribeTable",
    "DescribeTimeToLive": "dynamodb:DescribeTimeToLive",
}
_DDB_TRANSACT_WRITE = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _table_arn(arns: _Arns, table: str) -> str:
    # DynamoDB accepts a table ARN wherever a table name goes.
    return table if table.startswith("arn:") else arns.arn("dynamodb", f"table/{table}")


def _dynamodb(op: str, params: dict, arns: _Arns) -> list[Check]:
    if op in _DDB_SINGLE_TABLE:
        resource = _table_arn(arns, params["TableName"])
        if op in ("Query", "Scan") and params.get("IndexName"):
            resource = f"{resource}/index/{params['IndexName']}"
        return [Check(_DDB_SINGLE_TABLE[op], resource)]
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [Check(f"dynamodb:{op}", _table_arn(arns, t)) for t in params.get("RequestItems", {})]
    if op == "TransactWriteItems":
        checks = []
        for item in params.get("TransactItems", []):
            for kind, action in _DDB_TRANSACT_WRITE.items():
                if kind in item:
                    checks.append(Check(action, _table_arn(arns, item[kind]["TableName"])))
        return checks
    if op == "TransactGetItems":
        return [
            Check("dynamodb:GetItem", _table_arn(arns, i["Get"]["TableName"])) for i in params.get("TransactItems", [])
        ]
    raise Unmapped(f"dynamodb:{op}")


# ----------------------------------------------------------------------------- EventBridge
def _bus_arn(arns: _Arns, bus: str | None) -> str:
    bus = bus or "default"
    return bus if bus.startswith("arn:") else arns.arn("events", f"event-bus/{bus}")


def _events(op: str, params: dict, arns: _Arns) -> list[Check]:
    if op == "PutEvents":
        return [
            Check(
                "events:PutEvents",
                _bus_arn(arns, entry.get("EventBusName")),
                {"events:source": entry.get("Source", ""), "events:detail-type": entry.get("DetailType", "")},
            )
            for entry in params.get("Entries", [])
        ]
    raise Unmapped(f"events:{op}")


# ------------------------------------------------------------------------------------ SQS
_SQS_BY_URL = {
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "SetQueueAttributes": "sqs:SetQueueAttributes",
    "PurgeQueue": "sqs:PurgeQueue",
    "ListQueueTags": "sqs:ListQueueTags",
}
_SQS_HOST_REGION = re.compile(r"(?:^|\.)sqs\.([a-z0-9-]+)\.")


def queue_arn_from_url(url: str, arns: _Arns) -> str:
    """.../<account>/<queue>: path-style (LocalStack, sqs.<region>.amazonaws.com) or host-style."""
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) < 2:
        raise Unmapped(f"SQS queue URL without /<account>/<name>: {url}")
    account, name = parts[-2], parts[-1]
    match = _SQS_HOST_REGION.search(parsed.hostname or "")
    region = match.group(1) if match and match.group(1) != "localhost" else arns.region
    return arns.arn("sqs", name, region=region, account=account)


def _sqs(op: str, params: dict, arns: _Arns) -> list[Check]:
    if op in _SQS_BY_URL:
        return [Check(_SQS_BY_URL[op], queue_arn_from_url(params["QueueUrl"], arns))]
    if op == "GetQueueUrl":
        account = params.get("QueueOwnerAWSAccountId") or arns.account
        return [Check("sqs:GetQueueUrl", arns.arn("sqs", params["QueueName"], account=account))]
    raise Unmapped(f"sqs:{op}")


# ------------------------------------------------------------------------------------ SES
def _address(value: str) -> str:
    return parseaddr(value)[1] or value


def _ses(op: str, params: dict, arns: _Arns) -> list[Check]:
    if op not in ("SendEmail", "SendRawEmail"):
        raise Unmapped(f"ses:{op}")
    source = params.get("Source") or ""
    from_address = _address(source)
    destination = params.get("Destination") or {}
    recipients = [
        addr
        for key in ("ToAddresses", "CcAddresses", "BccAddresses")
        for _, addr in getaddresses(destination.get(key) or [])
    ] or list(params.get("Destinations") or [])
    context = {"ses:FromAddress": from_address, "ses:Recipients": recipients}
    display = parseaddr(source)[0]
    if display:
        context["ses:FromDisplayName"] = display
    # The identity is the verified address (or, with sending authorization, SourceArn/FromArn).
    identity = params.get("SourceArn") or params.get("FromArn") or arns.arn("ses", f"identity/{from_address}")
    return [Check(f"ses:{op}", identity, context)]


# ----------------------------------------------------------------------- CloudWatch, Logs
def _cloudwatch(op: str, params: dict, arns: _Arns) -> list[Check]:
    if op == "PutMetricData":
        return [Check("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": params.get("Namespace", "")})]
    raise Unmapped(f"cloudwatch:{op}")


def _logs(op: str, params: dict, arns: _Arns) -> list[Check]:
    group = params.get("logGroupName", "")
    if op == "CreateLogGroup":
        return [Check("logs:CreateLogGroup", arns.arn("logs", f"log-group:{group}"))]
    if op in ("CreateLogStream", "PutLogEvents"):
        stream = params.get("logStreamName", "")
        return [Check(f"logs:{op}", arns.arn("logs", f"log-group:{group}:log-stream:{stream}"))]
    raise Unmapped(f"logs:{op}")


def _sts(op: str, params: dict, arns: _Arns) -> list[Check]:
    if op == "GetCallerIdentity":
        return []
    raise Unmapped(f"sts:{op}")


_SERVICES = {
    "dynamodb": _dynamodb,
    "events": _events,
    "sqs": _sqs,
    "ses": _ses,
    "cloudwatch": _cloudwatch,
    "logs": _logs,
    "sts": _sts,
}


def checks_for(service: str, operation: str, params: dict, region: str, account: str) -> list[Check]:
    """The checks AWS makes for `service`'s `operation` with parsed request `params`."""
    handler = _SERVICES.get(service)
    if handler is None:
        raise Unmapped(f"{service}:{operation}")
    try:
        return handler(operation, params or {}, _Arns(region, account))
    except KeyError as missing:
        raise Unmapped(f"{service}:{operation} without {missing}") from None
