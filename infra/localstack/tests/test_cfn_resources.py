"""cfn_resources.py: the bus-policy merge that AWS::Events::EventBusPolicy does on AWS, and the
Dashboard provider's schema as LocalStack's engine reads it."""

from __future__ import annotations

import json

from orderflow_local_lambda.cfn_resources import DASHBOARD_SCHEMA, merged_bus_policy

OWN = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
       "Action": "events:PutEvents", "Resource": "arn:aws:events:us-east-1:000000000000:event-bus/b"}


def producer(account: str, source: str) -> dict:
    return {**OWN, "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
            "Condition": {"ForAllValues:StringEquals": {"events:source": source}}}


def test_each_statement_is_added_beside_the_others():
    policy = merged_bus_policy(None, "own", OWN)
    policy = merged_bus_policy(json.dumps(policy), "producer-1", producer("111111111111", "orderflow.orders"))
    policy = merged_bus_policy(json.dumps(policy), "producer-2", producer("222222222222", "orderflow.customers"))
    assert [s["Sid"] for s in policy["Statement"]] == ["own", "producer-1", "producer-2"]
    assert policy["Statement"][2]["Condition"]["ForAllValues:StringEquals"]["events:source"] == "orderflow.customers"
    assert policy["Version"] == "2012-10-17"


def test_a_statement_with_the_same_sid_is_replaced_not_repeated():
    policy = merged_bus_policy(None, "own", OWN)
    policy = merged_bus_policy(json.dumps(policy), "producer-1", producer("111111111111", "orderflow.orders"))
    policy = merged_bus_policy(json.dumps(policy), "producer-1", producer("333333333333", "orderflow.orders"))
    assert [s["Sid"] for s in policy["Statement"]] == ["own", "producer-1"]
    assert policy["Statement"][1]["Principal"]["AWS"] == "arn:aws:iam::333333333333:root"


def test_the_dashboard_is_identified_by_its_name_which_is_create_only():
    assert DASHBOARD_SCHEMA["primaryIdentifier"] == ["/properties/DashboardName"]
    assert DASHBOARD_SCHEMA["createOnlyProperties"] == ["/properties/DashboardName"]
