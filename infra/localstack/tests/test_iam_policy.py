"""The local IAM evaluator against the rules of AWS's IAM User Guide (see iam_policy.py)."""

import json

import pytest

from orderflow_local_lambda.iam_policy import (
    UnsupportedPolicy,
    arn_matches,
    evaluate,
    parse_policy,
)

TABLE = "arn:aws:dynamodb:us-east-1:000000000000:table/orderflow-test-payments"
OTHER_TABLE = "arn:aws:dynamodb:us-east-1:000000000000:table/orderflow-test-emails"
BUS = "arn:aws:events:us-east-1:000000000000:event-bus/orderflow-test"


def policy(*statements, name="inline"):
    return parse_policy(name, json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def allow(action, resource, **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_allow_needs_matching_action_and_resource():
    st = policy(allow(["dynamodb:GetItem", "dynamodb:PutItem"], TABLE, Sid="Payments"))
    decision = evaluate(st, "dynamodb:PutItem", TABLE)
    assert decision.allowed and [s.label for s in decision.allowing] == ["inline#Payments"]
    assert not evaluate(st, "dynamodb:DeleteItem", TABLE).allowed
    assert not evaluate(st, "dynamodb:PutItem", OTHER_TABLE).allowed


def test_no_statement_is_an_implicit_deny():
    decision = evaluate([], "sqs:SendMessage", "arn:aws:sqs:us-east-1:000000000000:q")
    assert not decision.allowed and not decision.explicit_deny


def test_explicit_deny_wins_over_any_allow():
    st = policy(
        allow("dynamodb:*", "*"),
        {"Sid": "NoDeletes", "Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": TABLE},
    )
    decision = evaluate(st, "dynamodb:DeleteItem", TABLE)
    assert not decision.allowed and decision.explicit_deny
    assert [s.label for s in decision.denying] == ["inline#NoDeletes"]
    assert evaluate(st, "dynamodb:DeleteItem", OTHER_TABLE).allowed


def test_action_wildcards_are_case_insensitive():
    st = policy(allow("DynamoDB:Get*", "*"), allow("sqs:?eceiveMessage", "*"))
    assert evaluate(st, "dynamodb:GetItem", TABLE).allowed
    assert evaluate(st, "sqs:ReceiveMessage", "x").allowed
    assert not evaluate(st, "dynamodb:PutItem", TABLE).allowed


def test_not_action_and_not_resource():
    st = policy({"Effect": "Allow", "NotAction": "dynamodb:Delete*", "NotResource": OTHER_TABLE})
    assert evaluate(st, "dynamodb:PutItem", TABLE).allowed
    assert not evaluate(st, "dynamodb:DeleteItem", TABLE).allowed
    assert not evaluate(st, "dynamodb:PutItem", OTHER_TABLE).allowed


def test_resource_wildcards_match_within_arn_segments():
    assert arn_matches("arn:aws:dynamodb:*:*:table/orderflow-*", TABLE)
    assert arn_matches(f"{TABLE}/index/*", f"{TABLE}/index/byTime")
    assert not arn_matches(TABLE, f"{TABLE}/index/byTime")  # the table ARN does not cover its indexes
    assert not arn_matches("arn:aws:dynamodb:us-east-1:000000000000:table/orderflow-test-payment?", OTHER_TABLE)
    assert arn_matches("*", "anything")
    # case-sensitive
    assert not arn_matches(TABLE.upper(), TABLE)


def test_string_equals_condition_on_ses_from_address():
    st = policy(
        allow("ses:SendEmail", "*", Condition={"StringEquals": {"ses:FromAddress": "orders@orderflow.example"}})
    )
    assert evaluate(st, "ses:SendEmail", "id", {"ses:FromAddress": "orders@orderflow.example"}).allowed
    assert not evaluate(st, "ses:SendEmail", "id", {"ses:FromAddress": "evil@orderflow.example"}).allowed
    # A key missing from the request makes a positive condition false.
    assert not evaluate(st, "ses:SendEmail", "id", {}).allowed


def test_condition_keys_are_case_insensitive_and_values_or_keys_and():
    st = policy(
        allow(
            "events:PutEvents",
            BUS,
            Condition={
                "StringEquals": {"events:Source": ["orderflow.payment", "orderflow.inventory"]},
                "StringLike": {"events:detail-type": "Payment*"},
            },
        )
    )
    ok = {"events:source": "orderflow.payment", "events:detail-type": "PaymentProcessed"}
    assert evaluate(st, "events:PutEvents", BUS, ok).allowed
    assert not evaluate(st, "events:PutEvents", BUS, {**ok, "events:source": "orderflow.saga"}).allowed
    assert not evaluate(st, "events:PutEvents", BUS, {**ok, "events:detail-type": "OrderPlaced"}).allowed


def test_negated_and_if_exists_operators_with_missing_keys():
    not_equals = policy(allow("s:A", "*", Condition={"StringNotEquals": {"k:x": "bad"}}))
    assert evaluate(not_equals, "s:A", "r", {}).allowed
    assert evaluate(not_equals, "s:A", "r", {"k:x": "good"}).allowed
    assert not evaluate(not_equals, "s:A", "r", {"k:x": "bad"}).allowed

    if_exists = policy(allow("s:A", "*", Condition={"StringEqualsIfExists": {"k:x": "good"}}))
    assert evaluate(if_exists, "s:A", "r", {}).allowed
    assert evaluate(if_exists, "s:A", "r", {"k:x": "good"}).allowed
    assert not evaluate(if_exists, "s:A", "r", {"k:x": "bad"}).allowed


def test_arn_like_condition():
    st = policy(
        allow("s:A", "*", Condition={"ArnLike": {"aws:SourceArn": "arn:aws:events:*:000000000000:rule/orderflow-*"}})
    )
    ours = "arn:aws:events:us-east-1:000000000000:rule/orderflow-test-x"
    other_account = "arn:aws:events:us-east-1:111111111111:rule/orderflow-x"
    assert evaluate(st, "s:A", "r", {"aws:SourceArn": ours}).allowed
    assert not evaluate(st, "s:A", "r", {"aws:SourceArn": other_account}).allowed
    not_like = policy(allow("s:A", "*", Condition={"ArnNotLike": {"aws:SourceArn": "arn:aws:events:*:*:rule/evil-*"}}))
    assert evaluate(not_like, "s:A", "r", {}).allowed


def test_multivalued_set_operators():
    any_value = policy(
        allow("ses:SendEmail", "*", Condition={"ForAnyValue:StringLike": {"ses:Recipients": "*@orderflow.example"}})
    )
    assert evaluate(any_value, "ses:SendEmail", "r", {"ses:Recipients": ["a@x.com", "b@orderflow.example"]}).allowed
    assert not evaluate(any_value, "ses:SendEmail", "r", {"ses:Recipients": ["a@x.com"]}).allowed
    assert not evaluate(any_value, "ses:SendEmail", "r", {}).allowed

    all_values = policy(
        allow("ses:SendEmail", "*", Condition={"ForAllValues:StringLike": {"ses:Recipients": "*@orderflow.example"}})
    )
    ours = ["a@orderflow.example", "b@orderflow.example"]
    assert evaluate(all_values, "ses:SendEmail", "r", {"ses:Recipients": ours}).allowed
    mixed = ["a@orderflow.example", "b@x.com"]
    assert not evaluate(all_values, "ses:SendEmail", "r", {"ses:Recipients": mixed}).allowed
    assert evaluate(all_values, "ses:SendEmail", "r", {}).allowed  # AWS: true when the key is missing


def test_null_condition():
    st = policy(allow("s:A", "*", Condition={"Null": {"k:x": "true"}}))
    assert evaluate(st, "s:A", "r", {}).allowed
    assert not evaluate(st, "s:A", "r", {"k:x": "v"}).allowed


def test_unsupported_operator_is_an_error_not_an_allow():
    st = policy(allow("s:A", "*", Condition={"NumericLessThan": {"k:n": "3"}}))
    with pytest.raises(UnsupportedPolicy):
        evaluate(st, "s:A", "r", {"k:n": "1"})


def test_statement_dict_and_string_fields():
    st = parse_policy("p", {"Statement": {"Effect": "Allow", "Action": "s:A", "Resource": "*"}})
    assert evaluate(st, "s:A", "r").allowed
    with pytest.raises(UnsupportedPolicy):
        parse_policy("p", {"Statement": [{"Effect": "Maybe", "Action": "s:A", "Resource": "*"}]})
