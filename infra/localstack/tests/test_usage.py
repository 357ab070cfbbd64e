"""The usage records' facts: what each request's bill depends on, from its request and response."""

from types import SimpleNamespace

from orderflow_local_lambda import iam_enforcer, usage


def test_dynamodb_item_sizes_follow_awss_rules():
    # "name" 4 + "ord-1" 5; "n" 1 + 12345 (5 digits -> 3 + 1 = 4); "ok" 2 + 1; "tags" 4 + 3 + (1 + 1) + (1 + 2)
    item = {
        "name": {"S": "ord-1"},
        "n": {"N": "12345"},
        "ok": {"BOOL": True},
        "tags": {"L": [{"S": "a"}, {"S": "bc"}]},
    }
    assert usage.item_size(item) == 9 + 5 + 3 + (4 + 3 + 2 + 3)
    assert usage.value_size({"N": "100"}) == 2  # one significant digit
    assert usage.value_size({"M": {"k": {"S": "v"}}}) == 3 + 1 + 1 + 1


def test_writes_list_one_size_per_item_and_reads_their_bytes():
    put = {"Item": {"pk": {"S": "x" * 10}}}
    assert usage.facts("dynamodb", "PutItem", put, {}) == {"writes": [12]}
    transact = {"TransactItems": [{"Put": put}, {"Update": {}}, {"ConditionCheck": {}}]}
    assert usage.facts("dynamodb", "TransactWriteItems", transact, {}) == {"writes": [12, 0, 0]}
    batch = {"RequestItems": {"t1": [{"PutRequest": put}, {"PutRequest": put}], "t2": [{"DeleteRequest": {}}]}}
    assert usage.facts("dynamodb", "BatchWriteItem", batch, {}) == {"writes": [12, 12, 0]}
    query = usage.facts("dynamodb", "Query", {"ConsistentRead": True}, {"Items": [put["Item"], put["Item"]]})
    assert query == {"read_bytes": 24, "consistent": True}
    assert usage.facts("dynamodb", "GetItem", {}, {}) == {"read_bytes": 0, "consistent": False}


def test_batches_count_their_entries_and_payloads():
    assert usage.facts("events", "PutEvents", {"Entries": [{}, {}, {}]}, {}) == {"entries": 3}
    received = usage.facts("sqs", "ReceiveMessage", {}, {"Messages": [{"Body": "ab"}, {"Body": "c"}]})
    assert received == {"entries": 2, "payload_bytes": 3}
    assert usage.facts("sqs", "ReceiveMessage", {}, {}) == {"entries": 0, "payload_bytes": 0}
    ses = {"Destination": {"ToAddresses": ["a@x"], "BccAddresses": ["b@x"]}}
    assert usage.facts("ses", "SendEmail", ses, {}) == {"recipients": 2}


def context(internal=False, principal=None, key="test"):
    auth = f"AWS4-HMAC-SHA256 Credential={key}/20261121/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=x"
    return SimpleNamespace(
        is_internal_call=internal,
        internal_request_params={"service_principal": principal} if internal else None,
        service=SimpleNamespace(service_name="sqs"),
        operation=SimpleNamespace(name="DeleteMessageBatch"),
        service_request={"Entries": [{}, {}]},
        service_response={},
        request_id="req-1",
        request=SimpleNamespace(headers={"Authorization": auth}),
    )


def test_each_request_is_recorded_once_with_who_made_it(monkeypatch):
    log = usage.BoundedLog()
    monkeypatch.setattr(usage, "REQUESTS", log)
    caller = iam_enforcer.Caller("000000000000", "arn:aws:iam::000000000000:role/r", "orderflow-test-audit")
    monkeypatch.setattr(iam_enforcer, "find_caller", lambda key: caller if key == "LSIAKEY" else None)
    ok = SimpleNamespace(status_code=200)
    usage.record_request(context(internal=True, principal="lambda"), ok)
    usage.record_request(context(key="LSIAKEY"), ok)
    usage.record_request(context(), ok)
    kinds = [(r["caller_kind"], r["caller"], r["entries"], r["request_id"]) for r in log.since(0)]
    assert kinds == [
        ("service", "lambda", 2, "req-1"),
        ("function", "orderflow-test-audit", 2, "req-1"),
        ("client", "", 2, "req-1"),
    ]


def test_the_caller_is_the_one_seen_before_the_provider_rewrote_the_request(monkeypatch):
    log = usage.BoundedLog()
    monkeypatch.setattr(usage, "REQUESTS", log)
    caller = iam_enforcer.Caller("000000000000", "arn:aws:iam::000000000000:role/r", "orderflow-test-orders")
    monkeypatch.setattr(iam_enforcer, "find_caller", lambda key: caller if key == "LSIAKEY" else None)
    ctx = context(key="LSIAKEY")
    usage._request_handler(None, ctx, None)
    ctx.request = context(key="rewritten").request  # as LocalStack's DynamoDB provider does
    usage.record_request(ctx, SimpleNamespace(status_code=200))
    assert log.since(0)[0]["caller"] == "orderflow-test-orders"


def test_invocations_are_kept_from_a_time_on(monkeypatch):
    log = usage.BoundedLog(limit=2)
    monkeypatch.setattr(usage, "INVOCATIONS", log)
    for i in range(3):
        usage.record_invocation("f", f"r{i}", 1.5, None, 128, "")
    assert [r["request_id"] for r in log.since(0)] == ["r1", "r2"] and log.dropped == 1
