"""After the e2e tests: what the local IAM enforcement saw, per Lambda function.

    python -m orderflow_local_lambda.iam_report --prefix orderflow-test- [--since EPOCH]

Prints, and fails (exit 1) on:
- every request a function made that its role did not allow (function, action, resource,
  AWS's message), as recorded by iam_enforcer.py at `GET /_orderflow/iam`;
- every permission an event source mapping needs from the function's execution role that
  the role lacks. "When you use an event source mapping to invoke your function, Lambda uses
  the execution role to read event data" ("Working with AWS managed policies in the execution
  role": https://docs.aws.amazon.com/lambda/latest/dg/permissions-managed-policies.html), and
  AWS refuses to create such a mapping ("The provided execution role does not have
  permissions to call ReceiveMessage on SQS"); LocalStack does not check, and its pollers run
  inside LocalStack, not with the function's credentials.
  Needed, per Lambda Developer Guide: SQS source - sqs:ReceiveMessage, sqs:DeleteMessage,
  sqs:GetQueueAttributes ("Using Lambda with Amazon SQS", execution role permissions:
  https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html); DynamoDB stream -
  dynamodb:DescribeStream, dynamodb:GetRecords, dynamodb:GetShardIterator,
  dynamodb:ListStreams ("Using Lambda with Amazon DynamoDB":
  https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html); an SQS on-failure destination -
  sqs:SendMessage ("Retaining discarded batch records", same guide).
Prints, without failing: per function, each granted action (policy statement and action)
that no request used - neither the function's own requests nor the Lambda service's needs
above (ESM polling, log delivery: logs:CreateLogGroup/CreateLogStream/PutLogEvents, "Lambda
execution role" https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html).

The roles are read from LocalStack's IAM API (the deployed role is the truth), not from the
template.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass

import boto3

from .iam_policy import Statement, action_matches, evaluate, parse_policy


@dataclass(frozen=True)
class ServiceNeed:
    why: str
    action: str
    resource: str


def _client(service: str):
    return boto3.client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def role_statements(iam, role_name: str) -> list[Statement]:
    statements: list[Statement] = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        statements += parse_policy(name, document)
    for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        arn = attached["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        statements += parse_policy(arn, document)
    return statements


def _stream_table(stream_arn: str) -> str:
    return stream_arn.split("/stream/")[0]


def service_needs(lambda_client, function: dict) -> list[ServiceNeed]:
    name, arn = function["FunctionName"], function["FunctionArn"]
    partition, _, _, region, account = arn.split(":")[1:6]
    group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{name}"
    needs = [
        ServiceNeed("log delivery", "logs:CreateLogGroup", group),
        ServiceNeed("log delivery", "logs:CreateLogStream", f"{group}:log-stream:2026/01/01/[$LATEST]0"),
        ServiceNeed("log delivery", "logs:PutLogEvents", f"{group}:log-stream:2026/01/01/[$LATEST]0"),
    ]
    pages = lambda_client.get_paginator("list_event_source_mappings").paginate(FunctionName=name)
    for esm in (m for page in pages for m in page["EventSourceMappings"]):
        source = esm["EventSourceArn"]
        why = f"event source mapping {esm['UUID'][:8]} ({source.split(':')[2]})"
        if source.split(":")[2] == "sqs":
            needs += [
                ServiceNeed(why, f"sqs:{a}", source) for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
            ]
        elif source.split(":")[2] == "dynamodb":
            needs += [
                ServiceNeed(why, f"dynamodb:{a}", source) for a in ("DescribeStream", "GetRecords", "GetShardIterator")
            ]
            needs.append(ServiceNeed(why, "dynamodb:ListStreams", "*"))
        destination = (esm.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        if destination and destination.split(":")[2] == "sqs":
            needs.append(ServiceNeed(f"{why} on-failure destination", "sqs:SendMessage", destination))
    return needs


def fetch_decisions(since: float) -> list[dict]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566").rstrip("/")
    with urllib.request.urlopen(f"{endpoint}/_orderflow/iam?since={since}", timeout=30) as response:
        body = json.load(response)
    if body.get("dropped"):
        print(f"warning: {body['dropped']} old decisions were dropped from LocalStack's memory")
    return body["decisions"]


FAULT_POLICY_PREFIX = "orderflow-fault-injection-"


def is_injected_fault(decision: dict) -> bool:
    """Denied explicitly, and only by statements of fault-injection policies."""
    denied_by = decision.get("denied_by") or []
    return (
        decision.get("reason") == "explicit"
        and bool(denied_by)
        and all(label.startswith(FAULT_POLICY_PREFIX) for label in denied_by)
    )


def report(prefix: str, since: float, out=sys.stdout) -> int:
    def say(line: str = "") -> None:
        print(line, file=out)

    decisions = fetch_decisions(since)
    lam, iam = _client("lambda"), _client("iam")
    functions = [
        f
        for page in lam.get_paginator("list_functions").paginate()
        for f in page["Functions"]
        if f["FunctionName"].startswith(prefix)
    ]
    functions.sort(key=lambda f: f["FunctionName"])
    ours = [d for d in decisions if d["function"].startswith(prefix)]
    # An e2e test that injects an outage with an inline Deny policy named FAULT_POLICY_PREFIX...
    # (tests/e2e/tests/outbox.rs) expects those denials: listed, not failures.
    injected = [d for d in ours if not d["allowed"] and is_injected_fault(d)]
    denied = [d for d in ours if not d["allowed"] and not is_injected_fault(d)]
    failures = 0

    # A request can make several checks; records from before request ids count one each.
    requests = len({d.get("request_id") or id(d) for d in ours})
    say(
        f"IAM enforced locally: {len(ours)} authorization checks ({requests} requests) of "
        f"{len({d['function'] for d in ours})} functions ({prefix}*), {len(denied)} denied"
    )
    if denied:
        say("\nDENIED requests (the function's role does not allow them; on AWS these calls fail):")
        counts = Counter((d["function"], d["action"], d["resource"], d["reason"]) for d in denied)
        for (function, action, resource, reason), n in sorted(counts.items()):
            say(f"  DENIED {function}: {action} on {resource or '-'} ({reason}; {n} request{'s' * (n != 1)})")
            detail = next(
                d for d in denied if (d["function"], d["action"], d["resource"]) == (function, action, resource)
            )
            if detail.get("context"):
                say(f"         condition keys: {json.dumps(detail['context'])}")
            if detail.get("message"):
                say(f"         {detail['message']}")
        failures += len(counts)
    if injected:
        counts = Counter((d["function"], d["action"], d["denied_by"][0]) for d in injected)
        say("\nInjected faults (explicit denies of test fault-injection policies; not failures):")
        for (function, action, label), n in sorted(counts.items()):
            say(f"  injected {function}: {action} denied by {label} ({n} request{'s' * (n != 1)})")

    unused_lines: list[str] = []
    esm_missing: list[str] = []
    for function in functions:
        name = function["FunctionName"]
        role_name = function["Role"].rsplit("/", 1)[-1]
        statements = role_statements(iam, role_name)
        used: set[tuple[str, str]] = set()  # (statement label, action)
        for d in ours:
            if d["function"] == name and d["allowed"]:
                used.update((label, d["action"]) for label in d.get("statements", []))
        for need in service_needs(lam, function):
            decision = evaluate(statements, need.action, need.resource)
            if not decision.allowed:
                esm_missing.append(f"  MISSING {name}: {need.action} on {need.resource} (needed for {need.why})")
            used.update((s.label, need.action) for s in decision.allowing)
        unused = []
        for st in statements:
            if st.effect != "Allow":
                continue
            patterns = st.actions or tuple(f"NotAction {a}" for a in st.not_actions)
            for pattern in patterns:
                if not any(label == st.label and action_matches(pattern, action) for label, action in used):
                    unused.append(f"    {st.label}: {pattern} on {', '.join(st.resources or st.not_resources)}")
        if unused:
            unused_lines.append(f"  {name} (role {role_name}):")
            unused_lines += unused

    if esm_missing:
        say(
            "\nEvent source mappings / log delivery: permissions the execution role lacks "
            "(AWS refuses such a mapping):"
        )
        for line in esm_missing:
            say(line)
        failures += len(esm_missing)

    say("\nGranted but used by no request in this run (candidates to remove, or untested paths):")
    for line in unused_lines or ["  (none)"]:
        say(line)
    say("\nIAM report: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", required=True, help="function name prefix, e.g. orderflow-test-")
    parser.add_argument("--since", type=float, default=0.0, help="only decisions from this epoch time on")
    args = parser.parse_args(argv)
    return report(args.prefix, args.since)


if __name__ == "__main__":
    sys.exit(main())
