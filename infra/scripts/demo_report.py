#!/usr/bin/env python3
"""Waits for the demo's orders to run through the system and prints what happened."""
import argparse
import json
import os
import sys
import time
import urllib.request
from datetime import UTC, datetime

import boto3

sys.path.insert(0, os.path.dirname(__file__))
from order import invoke, show

FINAL = {"SHIPPED", "CANCELLED"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--stage", required=True)
    p.add_argument("--observer", required=True, help="URL of the queue that sees every bus event")
    p.add_argument("--orders", nargs="+", required=True)
    p.add_argument("--dead-letter-order", default=None)
    p.add_argument("--skus", nargs="*", default=[])
    p.add_argument("--timeout", type=int, default=150)
    args = p.parse_args()

    dynamo = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    name = lambda suffix: f"orderflow-{args.stage}-{suffix}"  # noqa: E731

    def item(table, key, value):
        got = dynamo.get_item(TableName=name(table), Key={key: {"S": value}}, ConsistentRead=True).get("Item")
        return {k: next(iter(v.values())) for k, v in got.items()} if got else None

    seen_events, statuses = [], {}
    deadline = time.time() + args.timeout
    last_line = ""
    while time.time() < deadline:
        for order in args.orders:
            view = item("orders", "orderId", order)
            statuses[order] = view["status"] if view else "-"
        received = sqs.receive_message(QueueUrl=args.observer, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in received.get("Messages", []):
            seen_events.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=args.observer, ReceiptHandle=m["ReceiptHandle"])
        line = (
            "  ... " + ", ".join(f"{o}: {s}" for o, s in statuses.items())
            + f"; {len(seen_events)} events seen on the bus"
        )
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if all(s in FINAL for s in statuses.values()):
            # Let the last emails and counters land.
            settle = time.time() + 3
            while time.time() < settle:
                received = sqs.receive_message(QueueUrl=args.observer, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                for m in received.get("Messages", []):
                    seen_events.append(json.loads(m["Body"]))
                    sqs.delete_message(QueueUrl=args.observer, ReceiptHandle=m["ReceiptHandle"])
            break
        time.sleep(0.5)
    else:
        print(f"  timed out after {args.timeout}s (make logs FN=<function> shows what the functions did)")

    print("\nPayments")
    for order in args.orders:
        pay = item("payments", "orderId", order)
        if pay:
            amount = f"{int(pay['amount']) / 100:.2f} {pay['currency']}"
            print(f"  {order:<9} {pay['status']:<9} {amount:>10}  {pay['paymentId']}  {pay.get('declineReason', '')}")
        else:
            print(f"  {order:<9} (none)")

    if args.skus:
        print("\nStock")
        for sku in args.skus:
            s = item("inventory", "sku", sku)
            print(f"  {sku:<10} {s.get('stock', '?') if s else '(not stocked)'}")

    print("\nEmails (LocalStack's SES store)")
    try:
        with urllib.request.urlopen(f"{os.environ['AWS_ENDPOINT_URL']}/_aws/ses", timeout=5) as r:
            messages = json.load(r).get("messages", [])
        ours = [m for m in messages if any(o in json.dumps(m) for o in args.orders)]
        for m in ours:
            to = ",".join(m.get("Destination", {}).get("ToAddresses", []))
            print(f"  to {to:<18} {m.get('Subject', '')}")
        if not ours:
            print("  (none yet)")
    except OSError as e:
        print(f"  (could not read: {e})")

    print("\nAnalytics (this hour)")
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    counts = dynamo.query(TableName=name("analytics"), KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": f"counts#{hour}"}}).get("Items", [])
    print(
        "  " + ", ".join(f"{c['sk']['S']} {c.get('count', {}).get('N', '0')}" for c in counts)
        if counts
        else "  (none yet)"
    )

    print("\nEvents on the bus")
    for e in sorted(seen_events, key=lambda e: e.get("time", "")):
        d = e.get("detail", {})
        data, meta = d.get("data", {}), d.get("metadata", {})
        correlation = str(meta.get("correlationId", e.get("id", "?")))[:13]
        print(f"  {e.get('time', ''):<21} {e['detail-type']:<26} {e['source']:<22} "
              f"order {data.get('orderId', '-'):<9} correlation {correlation}")

    if args.dead_letter_order:
        print(f"\nDead letters for {args.dead_letter_order}")
        for queue in ("payment", "inventory", "orders"):
            url = sqs.get_queue_url(QueueName=name(queue) + "-dlq")["QueueUrl"]
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                       WaitTimeSeconds=1).get("Messages", [])
            for m in msgs:
                if args.dead_letter_order in m["Body"]:
                    a = m.get("MessageAttributes", {})
                    print(f"  {queue + ' DLQ':<14} {a.get('FailureReason', {}).get('StringValue', '?')}: "
                          f"{a.get('FailureMessage', {}).get('StringValue', '?')[:110]}")
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)

    for order in args.orders:
        print()
        answer = invoke(args.stage, {"orderId": order})
        show(f"Order {order}", answer.get("readModel"))
    return 0 if all(s in FINAL for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
