"""The gateway handler's decision flow: who is checked, what is raised, what is recorded.

The caller lookup (moto's STS store) and the role read (moto's IAM store) are replaced by
fixed answers here; `make test` exercises them for real against LocalStack.
"""

import json
from types import SimpleNamespace

import pytest
from localstack.aws.api import CommonServiceException

from orderflow_local_lambda import iam_enforcer
from orderflow_local_lambda.iam_policy import parse_policy

ROLE_ARN = "arn:aws:iam::000000000000:role/orderflow-test-PaymentFunctionRole-abc"
BUS = "arn:aws:events:us-east-1:000000000000:event-bus/orderflow-test"
POLICY = {
    "Statement": [
        {"Sid": "Publish", "Effect": "Allow", "Action": "events:PutEvents", "Resource": BUS,
         "Condition": {"StringEquals": {"events:source": "orderflow.payment"}}},
        {"Sid": "NoDeletes", "Effect": "Deny", "Action": "sqs:DeleteMessage", "Resource": "*"},
        {"Sid": "Queue", "Effect": "Allow", "Action": "sqs:*", "Resource": "*"},
    ]
}


def context(service, operation, params, key="LSIAQAAAAAAAEXAMPLE", internal=False):
    auth = (
        f"AWS4-HMAC-SHA256 Credential={key}/20261121/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=x"
    )
    return SimpleNamespace(
        is_internal_call=internal,
        service=SimpleNamespace(service_name=service),
        operation=SimpleNamespace(name=operation),
        service_request=params,
        region="us-east-1",
        account_id="000000000000",
        request=SimpleNamespace(headers={"Authorization": auth}),
    )


@pytest.fixture
def role(monkeypatch):
    caller = iam_enforcer.Caller("000000000000", ROLE_ARN, "orderflow-test-payment")
    monkeypatch.setattr(iam_enforcer, "find_caller", lambda key: caller if key and key.startswith("LSIA") else None)
    monkeypatch.setattr(iam_enforcer, "role_statements", lambda c: parse_policy("PaymentPolicy", json.dumps(POLICY)))
    log = iam_enforcer.DecisionLog()
    monkeypatch.setattr(iam_enforcer, "DECISIONS", log)
    return log


def put_events(source):
    return {
        "Entries": [
            {"EventBusName": "orderflow-test", "Source": source, "DetailType": "PaymentProcessed", "Detail": "{}"}
        ]
    }


def test_an_allowed_request_passes_and_is_recorded_with_its_statement(role):
    iam_enforcer.authorize(context("events", "PutEvents", put_events("orderflow.payment")))
    [decision] = role.snapshot()
    assert decision["allowed"] and decision["function"] == "orderflow-test-payment"
    assert decision["statements"] == ["PaymentPolicy#Publish"]


def test_a_request_the_role_does_not_allow_gets_awss_error_and_is_recorded(role):
    with pytest.raises(CommonServiceException) as denied:
        iam_enforcer.authorize(context("events", "PutEvents", put_events("orderflow.saga")))
    assert denied.value.code == "AccessDeniedException" and denied.value.status_code == 400
    assert denied.value.message == (
        "User: arn:aws:sts::000000000000:assumed-role/orderflow-test-PaymentFunctionRole-abc/orderflow-test-payment "
        f"is not authorized to perform: events:PutEvents on resource: {BUS} "
        "because no identity-based policy allows the events:PutEvents action"
    )
    [decision] = role.snapshot()
    assert not decision["allowed"] and decision["reason"] == "implicit" and decision["message"] == denied.value.message


def test_explicit_deny_uses_the_query_protocol_code_for_sqs(role):
    with pytest.raises(CommonServiceException) as denied:
        params = {"QueueUrl": "http://127.0.0.1:4566/000000000000/q", "ReceiptHandle": "r"}
        iam_enforcer.authorize(context("sqs", "DeleteMessage", params))
    assert (denied.value.code, denied.value.status_code) == ("AccessDenied", 403)
    assert denied.value.message.endswith("with an explicit deny in an identity-based policy")
    assert role.snapshot()[0]["denied_by"] == ["PaymentPolicy#NoDeletes"]


def test_an_unmapped_operation_is_denied_and_says_so(role):
    with pytest.raises(CommonServiceException) as denied:
        iam_enforcer.authorize(context("kms", "Decrypt", {"CiphertextBlob": b"x"}))
    assert "kms:Decrypt" in denied.value.message and "no mapping" in denied.value.message
    assert role.snapshot()[0]["reason"] == "unmapped"


def test_other_credentials_and_internal_calls_are_not_checked(role):
    iam_enforcer.authorize(context("kms", "Decrypt", {}, key="test"))
    iam_enforcer.authorize(context("kms", "Decrypt", {}, internal=True))
    assert role.snapshot() == []
