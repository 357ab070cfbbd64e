"""Request -> (IAM action, resource, condition keys), as AWS documents it (see iam_requests.py)."""

import pytest

from orderflow_local_lambda.iam_requests import Check, Unmapped, checks_for, queue_arn_from_url

R, A = "us-east-1", "000000000000"


def checks(service, op, params):
    return [(c.action, c.resource, c.context) for c in checks_for(service, op, params, R, A)]


def table(name):
    return f"arn:aws:dynamodb:{R}:{A}:table/{name}"


def test_dynamodb_single_item_operations_are_on_the_table():
    assert checks("dynamodb", "PutItem", {"TableName": "t"}) == [("dynamodb:PutItem", table("t"), {})]
    assert checks("dynamodb", "GetItem", {"TableName": table("t")}) == [("dynamodb:GetItem", table("t"), {})]


def test_dynamodb_query_on_an_index_is_on_the_index_arn():
    assert checks("dynamodb", "Query", {"TableName": "store", "IndexName": "byTime"}) == [
        ("dynamodb:Query", table("store") + "/index/byTime", {})
    ]
    assert checks("dynamodb", "Query", {"TableName": "store"}) == [("dynamodb:Query", table("store"), {})]


def test_transact_write_items_is_authorized_per_item_action_and_table():
    params = {
        "TransactItems": [
            {"Put": {"TableName": "a", "Item": {}}},
            {"Update": {"TableName": "b", "Key": {}}},
            {"Delete": {"TableName": "a", "Key": {}}},
            {"ConditionCheck": {"TableName": "c", "Key": {}}},
        ]
    }
    assert [c[:2] for c in checks("dynamodb", "TransactWriteItems", params)] == [
        ("dynamodb:PutItem", table("a")),
        ("dynamodb:UpdateItem", table("b")),
        ("dynamodb:DeleteItem", table("a")),
        ("dynamodb:ConditionCheckItem", table("c")),
    ]


def test_transact_get_and_batch_operations():
    transact_get = {"TransactItems": [{"Get": {"TableName": "a"}}]}
    assert [c[:2] for c in checks("dynamodb", "TransactGetItems", transact_get)] == [("dynamodb:GetItem", table("a"))]
    assert [c[:2] for c in checks("dynamodb", "BatchGetItem", {"RequestItems": {"a": {}, "b": {}}})] == [
        ("dynamodb:BatchGetItem", table("a")),
        ("dynamodb:BatchGetItem", table("b")),
    ]
    assert [c[:2] for c in checks("dynamodb", "BatchWriteItem", {"RequestItems": {"a": []}})] == [
        ("dynamodb:BatchWriteItem", table("a"))
    ]


def test_put_events_is_checked_per_entry_with_source_and_detail_type():
    params = {
        "Entries": [
            {"EventBusName": "orderflow-test", "Source": "orderflow.payment", "DetailType": "PaymentProcessed"},
            {"EventBusName": f"arn:aws:events:{R}:{A}:event-bus/other", "Source": "s", "DetailType": "d"},
            {"Source": "s2", "DetailType": "d2"},
        ]
    }
    assert checks("events", "PutEvents", params) == [
        ("events:PutEvents", f"arn:aws:events:{R}:{A}:event-bus/orderflow-test",
         {"events:source": "orderflow.payment", "events:detail-type": "PaymentProcessed"}),
        ("events:PutEvents", f"arn:aws:events:{R}:{A}:event-bus/other",
         {"events:source": "s", "events:detail-type": "d"}),
        ("events:PutEvents", f"arn:aws:events:{R}:{A}:event-bus/default",
         {"events:source": "s2", "events:detail-type": "d2"}),
    ]


@pytest.mark.parametrize(
    "url, arn",
    [
        ("http://127.0.0.1:4566/000000000000/orderflow-test-payment-dlq",
         f"arn:aws:sqs:{R}:{A}:orderflow-test-payment-dlq"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo", "arn:aws:sqs:eu-west-1:123456789012:q.fifo"),
        ("http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q", f"arn:aws:sqs:{R}:{A}:q"),
    ],
)
def test_queue_arn_from_url(url, arn):
    from orderflow_local_lambda.iam_requests import _Arns

    assert queue_arn_from_url(url, _Arns(R, A)) == arn


def test_sqs_batch_operations_use_the_single_message_actions():
    url = f"http://127.0.0.1:4566/{A}/q"
    assert checks("sqs", "SendMessageBatch", {"QueueUrl": url}) == [("sqs:SendMessage", f"arn:aws:sqs:{R}:{A}:q", {})]
    assert checks("sqs", "DeleteMessageBatch", {"QueueUrl": url})[0][0] == "sqs:DeleteMessage"
    assert checks("sqs", "GetQueueUrl", {"QueueName": "q", "QueueOwnerAWSAccountId": "111111111111"}) == [
        ("sqs:GetQueueUrl", f"arn:aws:sqs:{R}:111111111111:q", {})
    ]


def test_ses_send_email_is_on_the_from_identity_with_from_address_and_recipients():
    params = {
        "Source": "Orderflow <orders@orderflow.example>",
        "Destination": {"ToAddresses": ["ada@example.com"], "BccAddresses": ["audit@orderflow.example"]},
    }
    assert checks("ses", "SendEmail", params) == [
        (
            "ses:SendEmail",
            f"arn:aws:ses:{R}:{A}:identity/orders@orderflow.example",
            {
                "ses:FromAddress": "orders@orderflow.example",
                "ses:Recipients": ["ada@example.com", "audit@orderflow.example"],
                "ses:FromDisplayName": "Orderflow",
            },
        )
    ]


def test_cloudwatch_put_metric_data_carries_the_namespace():
    assert checks("cloudwatch", "PutMetricData", {"Namespace": "Orderflow"}) == [
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Orderflow"})
    ]


def test_get_caller_identity_needs_no_permission():
    assert checks_for("sts", "GetCallerIdentity", {}, R, A) == []


@pytest.mark.parametrize(
    "service, op, params",
    [
        ("dynamodb", "DeleteTable", {"TableName": "t"}),
        ("kms", "Decrypt", {}),
        ("lambda", "Invoke", {"FunctionName": "f"}),
        ("sqs", "SendMessage", {}),  # no QueueUrl: cannot say what is authorized
    ],
)
def test_unmapped_operations_raise(service, op, params):
    with pytest.raises(Unmapped):
        checks_for(service, op, params, R, A)


def test_check_equality_ignores_context():
    assert Check("a", "r", {"k": "v"}) == Check("a", "r", {})
