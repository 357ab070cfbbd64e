"""Which denials the IAM report counts as failures."""

from orderflow_local_lambda.iam_report import is_injected_fault


def test_an_explicit_deny_of_a_fault_injection_policy_is_an_injected_fault():
    decision = {
        "allowed": False,
        "reason": "explicit",
        "denied_by": ["orderflow-fault-injection-outbox-putevents#EventBridgeUnavailable"],
    }
    assert is_injected_fault(decision)


def test_a_missing_grant_or_another_deny_is_a_failure():
    assert not is_injected_fault({"allowed": False, "reason": "implicit", "denied_by": []})
    assert not is_injected_fault(
        {"allowed": False, "reason": "explicit", "denied_by": ["OutboxFunctionRolePolicy0#Deny"]}
    )
    mixed = ["orderflow-fault-injection-x#A", "OutboxFunctionRolePolicy0#Deny"]
    assert not is_injected_fault({"allowed": False, "reason": "explicit", "denied_by": mixed})
