"""Orderflow's own cfn-lint rules: AWS behaviours that LocalStack does not enforce.

Loaded with `cfn-lint --append-rules infra/cfn-rules` (infra/scripts/check_template.sh).
Every rule names the AWS page it rests on; infra/cfn-rules/README.md lists them.

All rules live in this one module on purpose: cfn-lint imports every `[A-Za-z1-9]*.py`
file here as a separate module outside `sys.path`, so rule modules could not share the
reference-resolving helpers below without path tricks. (Nor are such modules in
`sys.modules`, which is why the records below are NamedTuples, not dataclasses.)

What the rules see: cfn-lint 1.x no longer runs the SAM transform before rules run; it
merges `Globals` into the `AWS::Serverless::*` resources and leaves them as they are. So
a function's SQS or stream trigger is either an `AWS::Lambda::EventSourceMapping` or an
`Events` entry of an `AWS::Serverless::Function`; `event_source_mappings` reads both.

Hand-written because no kept library covers these checks: cfn-lint's built-in rules
validate each resource against its schema, not relations between resources (queue vs.
consuming function, rule vs. its DLQ's policy).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any, NamedTuple

from cfnlint.rules import CloudFormationLintRule, RuleMatch

SQS_QUEUE = "AWS::SQS::Queue"
SQS_QUEUE_POLICY = "AWS::SQS::QueuePolicy"
EVENTS_RULE = "AWS::Events::Rule"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"

# Defaults when the property is absent. SQS: "the default visibility timeout for a
# message is 30 seconds" (Amazon SQS API reference, ChangeMessageVisibility / ReceiveMessage
# VisibilityTimeout). Lambda: "The default value for this setting is 3 seconds"
# (AWS Lambda Developer Guide, "Configure Lambda function timeout",
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 30
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 3


# ------------------------------------------------------------------ reference helpers


def referenced_resource(value: Any) -> tuple[str | None, str | None]:
    """(logical id, attribute) named by `Ref`, `Fn::GetAtt` or a bare `Fn::Sub "${X.Attr}"`.

    `Ref` yields attribute None. Anything else (literal, other intrinsics) yields (None, None).
    """
    if not isinstance(value, dict) or len(value) != 1:
        return None, None
    (function, argument), = value.items()
    if function == "Ref" and isinstance(argument, str):
        return argument, None
    if function == "Fn::GetAtt":
        if isinstance(argument, list) and len(argument) == 2 and all(isinstance(a, str) for a in argument):
            return argument[0], argument[1]
        if isinstance(argument, str) and "." in argument:
            logical_id, attribute = argument.split(".", 1)
            return logical_id, attribute
    if function == "Fn::Sub" and isinstance(argument, str):
        text = argument.strip()
        if text.startswith("${") and text.endswith("}") and text.count("${") == 1:
            inner = text[2:-1]
            if "." in inner:
                logical_id, attribute = inner.split(".", 1)
                return logical_id, attribute
            return inner, None
    return None, None


def resources(cfn) -> dict[str, dict]:
    found = cfn.template.get("Resources", {})
    return found if isinstance(found, dict) else {}


def resource_of_type(cfn, logical_id: str | None, *types: str) -> dict | None:
    if logical_id is None:
        return None
    resource = resources(cfn).get(logical_id)
    if isinstance(resource, dict) and resource.get("Type") in types:
        return resource
    return None


def properties(resource: dict | None) -> dict:
    found = (resource or {}).get("Properties", {})
    return found if isinstance(found, dict) else {}


def queue_id_of_arn(cfn, value: Any) -> str | None:
    """The logical id of the template's SQS queue whose ARN `value` is, else None."""
    logical_id, attribute = referenced_resource(value)
    if attribute == "Arn" and resource_of_type(cfn, logical_id, SQS_QUEUE):
        return logical_id
    return None


def queue_id_of_url(cfn, value: Any) -> str | None:
    """The logical id of the template's SQS queue whose URL `value` is (`Ref` or QueueUrl)."""
    logical_id, attribute = referenced_resource(value)
    if attribute in (None, "QueueUrl") and resource_of_type(cfn, logical_id, SQS_QUEUE):
        return logical_id
    return None


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def queue_is_fifo(cfn, arn_value: Any) -> bool | None:
    """True/False for a queue of the template or a literal SQS ARN; None when unknowable."""
    queue_id = queue_id_of_arn(cfn, arn_value)
    if queue_id:
        return is_true(properties(resources(cfn)[queue_id]).get("FifoQueue"))
    if isinstance(arn_value, str) and arn_value.startswith("arn:") and ":sqs:" in arn_value:
        # SQS requires FIFO queue names to end in ".fifo".
        return arn_value.endswith(".fifo")
    return None


def is_sqs_arn(cfn, arn_value: Any) -> bool:
    if queue_id_of_arn(cfn, arn_value):
        return True
    return isinstance(arn_value, str) and arn_value.startswith("arn:") and ":sqs:" in arn_value


def whole_seconds(cfn, value: Any, default: int) -> int | None:
    """An integer property, a `Ref` to a parameter's Default, the default when absent; else None."""
    if value is None:
        return default
    logical_id, attribute = referenced_resource(value)
    if logical_id is not None and attribute is None:
        parameter = cfn.template.get("Parameters", {}).get(logical_id)
        value = parameter.get("Default") if isinstance(parameter, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def redrive_policy(queue_properties: dict) -> dict | None:
    """The queue's RedrivePolicy as a dict (CloudFormation also accepts a JSON string)."""
    policy = queue_properties.get("RedrivePolicy")
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return None
    return policy if isinstance(policy, dict) else None


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------ what the template wires


class RuleTarget(NamedTuple):
    rule_id: str
    target_id: str
    target: dict
    path: list


def rule_targets(cfn) -> Iterator[RuleTarget]:
    for rule_id, rule in resources(cfn).items():
        if not isinstance(rule, dict) or rule.get("Type") != EVENTS_RULE:
            continue
        for index, target in enumerate(as_list(properties(rule).get("Targets"))):
            if isinstance(target, dict):
                target_id = target.get("Id") if isinstance(target.get("Id"), str) else f"#{index}"
                yield RuleTarget(rule_id, target_id, target, ["Resources", rule_id, "Properties", "Targets", index])


class EventSourceMapping(NamedTuple):
    """An event source mapping, written directly or as a SAM function's event."""

    name: str  # for messages: "PaymentFunction event Orders" or the mapping's logical id
    path: list
    source_arn: Any
    function_id: str | None
    function_response_types: Any
    on_failure_destination: Any


def event_source_mappings(cfn) -> Iterator[EventSourceMapping]:
    for logical_id, resource in resources(cfn).items():
        if not isinstance(resource, dict):
            continue
        if resource.get("Type") == EVENT_SOURCE_MAPPING:
            props = properties(resource)
            function_id, _ = referenced_resource(props.get("FunctionName"))
            yield EventSourceMapping(
                name=logical_id,
                path=["Resources", logical_id, "Properties"],
                source_arn=props.get("EventSourceArn"),
                function_id=function_id,
                function_response_types=props.get("FunctionResponseTypes"),
                on_failure_destination=(
                    ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                ),
            )
        elif resource.get("Type") == SERVERLESS_FUNCTION:
            events = properties(resource).get("Events")
            for event_name, event in (events.items() if isinstance(events, dict) else []):
                if not isinstance(event, dict) or event.get("Type") not in ("SQS", "DynamoDB", "Kinesis"):
                    continue
                event_props = event.get("Properties") if isinstance(event.get("Properties"), dict) else {}
                source_key = "Queue" if event.get("Type") == "SQS" else "Stream"
                destination_config = event_props.get("DestinationConfig") or {}
                yield EventSourceMapping(
                    name=f"{logical_id} event {event_name}",
                    path=["Resources", logical_id, "Properties", "Events", event_name, "Properties"],
                    source_arn=event_props.get(source_key),
                    function_id=logical_id,
                    function_response_types=event_props.get("FunctionResponseTypes"),
                    on_failure_destination=(destination_config.get("OnFailure") or {}).get("Destination")
                    if isinstance(destination_config, dict)
                    else None,
                )


def dead_letter_queue_ids(cfn) -> set[str]:
    """Queues of the template that something uses as its dead-letter queue."""
    found: set[str] = set()
    for resource in resources(cfn).values():
        if not isinstance(resource, dict):
            continue
        props = properties(resource)
        kind = resource.get("Type")
        if kind == SQS_QUEUE:
            found.add(queue_id_of_arn(cfn, (redrive_policy(props) or {}).get("deadLetterTargetArn")))
        elif kind == "AWS::Events::EventBus":
            found.add(queue_id_of_arn(cfn, (props.get("DeadLetterConfig") or {}).get("Arn")))
        elif kind == LAMBDA_FUNCTION:
            found.add(queue_id_of_arn(cfn, (props.get("DeadLetterConfig") or {}).get("TargetArn")))
        elif kind == SERVERLESS_FUNCTION:
            found.add(queue_id_of_arn(cfn, (props.get("DeadLetterQueue") or {}).get("TargetArn")))
            events = props.get("Events")
            for event in (events.values() if isinstance(events, dict) else []):
                event_props = (event or {}).get("Properties") if isinstance(event, dict) else None
                if isinstance(event_props, dict):
                    found.add(queue_id_of_arn(cfn, (event_props.get("DeadLetterConfig") or {}).get("Arn")))
        elif kind == "AWS::Lambda::EventInvokeConfig":
            destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            found.add(queue_id_of_arn(cfn, destination))
    for target in rule_targets(cfn):
        found.add(queue_id_of_arn(cfn, (target.target.get("DeadLetterConfig") or {}).get("Arn")))
    for mapping in event_source_mappings(cfn):
        found.add(queue_id_of_arn(cfn, mapping.on_failure_destination))
    found.discard(None)
    return found


def policy_lets_rule_send(cfn, queue_id: str, rule_id: str) -> bool:
    """Whether some AWS::SQS::QueuePolicy on `queue_id` lets EventBridge rule `rule_id` send to it.

    Needs one statement with Effect Allow, principal service events.amazonaws.com, an action
    matching sqs:SendMessage, a resource covering the queue's ARN, and either no Condition
    or an ArnEquals/ArnLike aws:SourceArn naming the rule's ARN. Deny statements are not
    weighed (the template has none; a Deny would only make this stricter).
    """
    for policy in resources(cfn).values():
        if not isinstance(policy, dict) or policy.get("Type") != SQS_QUEUE_POLICY:
            continue
        props = properties(policy)
        if queue_id not in {queue_id_of_url(cfn, url) for url in as_list(props.get("Queues"))}:
            continue
        document = props.get("PolicyDocument")
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError:
                continue
        if not isinstance(document, dict):
            continue
        for statement in as_list(document.get("Statement")):
            if isinstance(statement, dict) and statement_lets_rule_send(cfn, statement, queue_id, rule_id):
                return True
    return False


def statement_lets_rule_send(cfn, statement: dict, queue_id: str, rule_id: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    principal = statement.get("Principal")
    services = as_list(principal.get("Service")) if isinstance(principal, dict) else []
    if "events.amazonaws.com" not in services:
        return False
    actions = [a for a in as_list(statement.get("Action")) if isinstance(a, str)]
    if not any(fnmatch.fnmatchcase("sqs:sendmessage", action.lower()) for action in actions):
        return False
    if not any(value == "*" or queue_id_of_arn(cfn, value) == queue_id for value in as_list(statement.get("Resource"))):
        return False
    condition = statement.get("Condition")
    if condition is None:
        return True
    if not isinstance(condition, dict):
        return False
    for operator in ("ArnEquals", "ArnLike"):
        keys = condition.get(operator)
        if not isinstance(keys, dict):
            continue
        for key, values in keys.items():
            if key.lower() != "aws:sourcearn":
                continue
            for value in as_list(values):
                logical_id, attribute = referenced_resource(value)
                if logical_id == rule_id and attribute == "Arn":
                    return True
    return False


def looks_like_json_path(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("$") or "$." in value)


# ------------------------------------------------------------------ the rules


class RuleDeadLetterQueueIsStandard(CloudFormationLintRule):
    """An EventBridge rule target's DLQ must be a standard SQS queue.

    AWS: "EventBridge DLQs are standard Amazon SQS queues" (Amazon EventBridge User Guide,
    "Using dead-letter queues to process undelivered events in EventBridge",
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html); PutTargets
    rejects a FIFO DLQ with "SQS FIFO is not supported by Dead Letter Queues".
    LocalStack 4.13.1 accepts it.
    """

    id = "E9101"
    shortdesc = "EventBridge rule DLQ must be a standard SQS queue"
    description = "A rule target's DeadLetterConfig.Arn must not be an SQS FIFO queue"
    source_url = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html"
    tags = ["orderflow", "events", "sqs"]

    def match(self, cfn):
        matches = []
        for target in rule_targets(cfn):
            dlq_arn = (target.target.get("DeadLetterConfig") or {}).get("Arn")
            if queue_is_fifo(cfn, dlq_arn):
                dlq = queue_id_of_arn(cfn, dlq_arn) or dlq_arn
                matches.append(RuleMatch(
                    [*target.path, "DeadLetterConfig", "Arn"],
                    f"Rule {target.rule_id} target {target.target_id}: dead-letter queue {dlq} is a FIFO queue; "
                    "EventBridge rule DLQs must be standard SQS queues (AWS rejects it: "
                    "'SQS FIFO is not supported by Dead Letter Queues')",
                ))
        return matches


class RuleTargetMessageGroupIdIsStatic(CloudFormationLintRule):
    """A rule target's SqsParameters.MessageGroupId is a static string, never a JSON path.

    AWS: SqsParameters.MessageGroupId is "The ID of the message group to use as the target",
    a plain String of at most 100 characters (Amazon EventBridge API Reference, SqsParameters,
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_SqsParameters.html;
    CloudFormation "AWS::Events::Rule SqsParameters", where it is Required for a FIFO or
    fair queue target). JSON-path ("dynamic path") parameters exist only on EventBridge
    Pipes targets ("Amazon EventBridge Pipes targets", Dynamic path parameters,
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-event-target.html).
    A rule target on a FIFO queue must therefore carry a static MessageGroupId.
    """

    id = "E9102"
    shortdesc = "EventBridge rule SQS MessageGroupId must be static"
    description = (
        "SqsParameters.MessageGroupId on an AWS::Events::Rule target must not be a JSON path, "
        "and a target on a FIFO queue must set one"
    )
    source_url = "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_SqsParameters.html"
    tags = ["orderflow", "events", "sqs"]

    def match(self, cfn):
        matches = []
        for target in rule_targets(cfn):
            sqs_parameters = target.target.get("SqsParameters")
            group_id = sqs_parameters.get("MessageGroupId") if isinstance(sqs_parameters, dict) else None
            if looks_like_json_path(group_id):
                matches.append(RuleMatch(
                    [*target.path, "SqsParameters", "MessageGroupId"],
                    f"Rule {target.rule_id} target {target.target_id}: SqsParameters.MessageGroupId "
                    f"'{group_id}' is a JSON path; EventBridge rule targets take a static message group id "
                    "(only EventBridge Pipes resolve JSON paths)",
                ))
            elif group_id is None and queue_is_fifo(cfn, target.target.get("Arn")):
                queue = queue_id_of_arn(cfn, target.target.get("Arn")) or target.target.get("Arn")
                matches.append(RuleMatch(
                    target.path,
                    f"Rule {target.rule_id} target {target.target_id}: queue {queue} is a FIFO queue "
                    "but the target sets no static SqsParameters.MessageGroupId",
                ))
        return matches


class QueueVisibilityCoversFunctionTimeout(CloudFormationLintRule):
    """A queue consumed by Lambda has VisibilityTimeout >= 6 x the function's Timeout.

    AWS: "set the source queue's visibility timeout to at least six times the configuration
    timeout on your function" (AWS Lambda Developer Guide, "Creating and configuring an
    Amazon SQS event source mapping",
    https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html). Below 1x,
    Lambda refuses the mapping outright; LocalStack does neither check. Absent values are
    AWS's defaults: VisibilityTimeout 30 s, Timeout 3 s.
    """

    id = "E9103"
    shortdesc = "SQS visibility timeout must be >= 6x the consuming function's timeout"
    description = "Every SQS queue consumed by a Lambda event source mapping has VisibilityTimeout >= 6 x Timeout"
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html"
    tags = ["orderflow", "lambda", "sqs"]

    def match(self, cfn):
        matches = []
        for mapping in event_source_mappings(cfn):
            queue_id = queue_id_of_arn(cfn, mapping.source_arn)
            function = resource_of_type(cfn, mapping.function_id, LAMBDA_FUNCTION, SERVERLESS_FUNCTION)
            if queue_id is None or function is None:
                continue
            visibility = whole_seconds(
                cfn, properties(resources(cfn)[queue_id]).get("VisibilityTimeout"), DEFAULT_VISIBILITY_TIMEOUT_SECONDS
            )
            timeout = whole_seconds(cfn, properties(function).get("Timeout"), DEFAULT_FUNCTION_TIMEOUT_SECONDS)
            if visibility is None or timeout is None:
                continue  # a value only known at deploy time
            if visibility < 6 * timeout:
                matches.append(RuleMatch(
                    ["Resources", queue_id, "Properties"],
                    f"Queue {queue_id} has VisibilityTimeout {visibility} s but {mapping.name} feeds it to "
                    f"{mapping.function_id} whose Timeout is {timeout} s; AWS advises at least 6 x = {6 * timeout} s",
                ))
        return matches


class SqsEventSourceReportsBatchItemFailures(CloudFormationLintRule):
    """Every SQS event source mapping sets FunctionResponseTypes [ReportBatchItemFailures].

    AWS: without it "all messages in that batch become visible in the queue again",
    including ones already processed; Lambda only honours a function's batchItemFailures when
    ReportBatchItemFailures is in FunctionResponseTypes (AWS Lambda Developer Guide,
    "Handling errors for an SQS event source in Lambda", Implementing partial batch responses,
    https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). Every
    Orderflow SQS consumer returns partial batch failures (eventkit).
    """

    id = "E9104"
    shortdesc = "SQS event source mappings must report batch item failures"
    description = "Every SQS event source mapping has FunctionResponseTypes: [ReportBatchItemFailures]"
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html"
    tags = ["orderflow", "lambda", "sqs"]

    def match(self, cfn):
        matches = []
        for mapping in event_source_mappings(cfn):
            if not is_sqs_arn(cfn, mapping.source_arn):
                continue
            if "ReportBatchItemFailures" not in as_list(mapping.function_response_types):
                queue = queue_id_of_arn(cfn, mapping.source_arn) or mapping.source_arn
                matches.append(RuleMatch(
                    mapping.path,
                    f"{mapping.name} (queue {queue} -> {mapping.function_id}) lacks "
                    "FunctionResponseTypes: [ReportBatchItemFailures]; one failed message would return the whole batch",
                ))
        return matches


class QueueHasRedrivePolicy(CloudFormationLintRule):
    """Every SQS queue has a RedrivePolicy, unless it is itself a dead-letter queue.

    AWS: source queues target a dead-letter queue through their redrive policy
    (deadLetterTargetArn, maxReceiveCount) to isolate messages that are not processed
    successfully (Amazon SQS Developer Guide, "Using dead-letter queues in Amazon SQS",
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html).
    A queue counts as a DLQ when another queue's RedrivePolicy, a rule target's or event
    bus's DeadLetterConfig, a function's dead-letter config or an event source mapping's /
    invoke config's OnFailure destination names it.
    """

    id = "E9105"
    shortdesc = "SQS queues must have a redrive policy"
    description = "Every AWS::SQS::Queue that is not itself a dead-letter target has a RedrivePolicy"
    source_url = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html"
    tags = ["orderflow", "sqs"]

    def match(self, cfn):
        matches = []
        dead_letter_queues = dead_letter_queue_ids(cfn)
        for queue_id, queue in resources(cfn).items():
            if not isinstance(queue, dict) or queue.get("Type") != SQS_QUEUE or queue_id in dead_letter_queues:
                continue
            if redrive_policy(properties(queue)) is None:
                matches.append(RuleMatch(
                    ["Resources", queue_id, "Properties"],
                    f"Queue {queue_id} has no RedrivePolicy and nothing uses it as a dead-letter queue; "
                    "messages that keep failing would be retried until they expire",
                ))
        return matches


class RuleDeadLetterQueueAllowsRule(CloudFormationLintRule):
    """Each rule target's DLQ has a queue policy that lets that rule send to it.

    AWS: EventBridge needs permission to send to the DLQ: a queue policy with principal
    events.amazonaws.com, action sqs:SendMessage on the queue, conditioned on aws:SourceArn
    being the rule's ARN (Amazon EventBridge User Guide, "Using dead-letter queues to process
    undelivered events in EventBridge", granting permissions to the dead-letter queue,
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html). Without it
    failed deliveries are dropped (InvocationsFailedToBeSentToDLQ). LocalStack does not
    enforce IAM.
    """

    id = "E9106"
    shortdesc = "EventBridge rule DLQ needs a queue policy allowing the rule"
    description = (
        "Each rule target DLQ has an AWS::SQS::QueuePolicy allowing events.amazonaws.com sqs:SendMessage from that rule"
    )
    source_url = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html"
    tags = ["orderflow", "events", "sqs", "iam"]

    def match(self, cfn):
        matches = []
        for target in rule_targets(cfn):
            queue_id = queue_id_of_arn(cfn, (target.target.get("DeadLetterConfig") or {}).get("Arn"))
            if queue_id and not policy_lets_rule_send(cfn, queue_id, target.rule_id):
                matches.append(RuleMatch(
                    [*target.path, "DeadLetterConfig", "Arn"],
                    f"Rule {target.rule_id} target {target.target_id}: no AWS::SQS::QueuePolicy on dead-letter "
                    f"queue {queue_id} allows events.amazonaws.com sqs:SendMessage with aws:SourceArn "
                    f"= {target.rule_id}.Arn; EventBridge could not store failed events there",
                ))
        return matches


class RuleTargetQueueAllowsRule(CloudFormationLintRule):
    """Each rule target that is an SQS queue has a queue policy that lets that rule send to it.

    AWS: for Amazon SQS targets EventBridge uses the queue's resource-based policy: allow
    events.amazonaws.com sqs:SendMessage with ArnEquals aws:SourceArn = the rule's ARN
    (Amazon EventBridge User Guide, "Using resource-based policies for Amazon EventBridge",
    Amazon SQS permissions,
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html).
    A target with its own RoleArn is skipped: then the role's permissions apply.
    """

    id = "E9107"
    shortdesc = "EventBridge rule SQS target needs a queue policy allowing the rule"
    description = (
        "Each rule target SQS queue has an AWS::SQS::QueuePolicy allowing events.amazonaws.com sqs:SendMessage "
        "from that rule"
    )
    source_url = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html"
    tags = ["orderflow", "events", "sqs", "iam"]

    def match(self, cfn):
        matches = []
        for target in rule_targets(cfn):
            queue_id = queue_id_of_arn(cfn, target.target.get("Arn"))
            if queue_id and "RoleArn" not in target.target and not policy_lets_rule_send(cfn, queue_id, target.rule_id):
                matches.append(RuleMatch(
                    [*target.path, "Arn"],
                    f"Rule {target.rule_id} target {target.target_id}: no AWS::SQS::QueuePolicy on queue {queue_id} "
                    f"allows events.amazonaws.com sqs:SendMessage with aws:SourceArn = {target.rule_id}.Arn",
                ))
        return matches


class FifoRuleTargetHasContentBasedDeduplication(CloudFormationLintRule):
    """A FIFO queue that is an EventBridge rule target has ContentBasedDeduplication enabled.

    AWS: "If you specify an SQS FIFO queue as a target, the queue must have content-based
    deduplication enabled" (Amazon EventBridge API Reference, Target, SqsParameters,
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html): rule
    targets send no deduplication id.
    """

    id = "E9108"
    shortdesc = "FIFO rule target queue needs content-based deduplication"
    description = "An SQS FIFO queue targeted by an AWS::Events::Rule has ContentBasedDeduplication: true"
    source_url = "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html"
    tags = ["orderflow", "events", "sqs"]

    def match(self, cfn):
        matches = []
        for target in rule_targets(cfn):
            queue_id = queue_id_of_arn(cfn, target.target.get("Arn"))
            if not queue_id:
                continue
            queue_props = properties(resources(cfn)[queue_id])
            if is_true(queue_props.get("FifoQueue")) and not is_true(queue_props.get("ContentBasedDeduplication")):
                matches.append(RuleMatch(
                    ["Resources", queue_id, "Properties"],
                    f"Queue {queue_id} is a FIFO target of rule {target.rule_id} but has no "
                    "ContentBasedDeduplication: true; EventBridge sends no deduplication id",
                ))
        return matches


class ParameterIsConstrained(CloudFormationLintRule):
    """Every parameter has AllowedValues, an AllowedPattern, or (numbers) MinValue and MaxValue.

    AWS checks a parameter's constraints before it creates or changes anything ("Parameters
    template section syntax", AllowedPattern, AllowedValues, MinValue, MaxValue,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html);
    a value nothing constrains fails only when a resource or an intrinsic function trips over
    it, halfway through a deploy (an `EmailSender` without "@" at `Fn::Split`), and LocalStack
    often not at all.
    """

    id = "E9109"
    shortdesc = "Parameters must be constrained"
    description = ("A template parameter has AllowedValues, AllowedPattern, or (Type Number) both "
                   "MinValue and MaxValue")
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html"
    tags = ["orderflow", "parameters"]

    def match(self, cfn):
        matches = []
        parameters = cfn.template.get("Parameters") or {}
        for name, parameter in parameters.items():
            if not isinstance(parameter, dict):
                continue
            if "AllowedValues" in parameter or "AllowedPattern" in parameter:
                continue
            if parameter.get("Type") == "Number" and "MinValue" in parameter and "MaxValue" in parameter:
                continue
            # AWS-specific types (AWS::EC2::KeyPair::KeyName, SSM parameter types) are checked by AWS.
            if str(parameter.get("Type", "")).startswith("AWS::"):
                continue
            matches.append(RuleMatch(
                ["Parameters", name],
                f"Parameter {name} accepts any value: give it AllowedValues or an AllowedPattern"
                " (or, for a Number, MinValue and MaxValue), so that a bad value fails before the"
                " deploy starts",
            ))
        return matches
