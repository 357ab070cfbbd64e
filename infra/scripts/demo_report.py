#!/usr/bin/env python3
"""Waits for the demo's orders to be processed and prints what happened, readably."""
import argparse
import json
import sys
import time

import boto3


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--stage", required=True)
    p.add_argument("--observer", required=True, help="URL of the queue that sees every bus event")
    p.add_argument("--orders", nargs="+", required=True)
    p.add_argument("--dead-letter-order", default=None)
    p.add_argument("--timeout", type=int, default=90)
    args = p.parse_args()

    dynamo = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    payments_table = f"orderflow-{args.stage}-payments"
    dlq_url = sqs.get_queue_url(QueueName=f"orderflow-{args.stage}-payment-dlq")["QueueUrl"]

    seen_events, dead_letters, payments = [], [], {}
    deadline = time.time() + args.timeout
    last_line = ""
    while time.time() < deadline:
        for order in args.orders:
            if order not in payments:
                item = dynamo.get_item(TableName=payments_table, Key={"orderId": {"S": order}}, ConsistentRead=True).get("Item")
                if item:
                    payments[order] = {k: next(iter(v.values())) for k, v in item.items()}
        for m in sqs.receive_message(QueueUrl=args.observer, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            seen_events.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=args.observer, ReceiptHandle=m["ReceiptHandle"])
        if args.dead_letter_order and not dead_letters:
            for m in sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", []):
                if args.dead_letter_order in m["Body"]:
                    dead_letters.append(m)
                sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        outcomes = [e for e in seen_events if e["source"] == "orderflow.payment"]
        line = (f"  ... {len(payments)}/{len(args.orders)} payments recorded, "
                f"{len(outcomes)} outcome events on the bus, {len(dead_letters)} dead letter(s)")
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if len(payments) == len(args.orders) and len(outcomes) >= len(args.orders) and \
                (not args.dead_letter_order or dead_letters):
            break
        time.sleep(0.5)
    else:
        print(f"  timed out after {args.timeout}s (make local-logs shows the function logs)")

    print("\nPayments (table %s)" % payments_table)
    print(f"  {'order':<10} {'status':<9} {'amount':>10}  {'payment':<21} reason")
    for order in args.orders:
        pay = payments.get(order)
        if not pay:
            print(f"  {order:<10} (none)")
            continue
        amount = f"{int(pay['amount']) / 100:.2f} {pay['currency']}"
        print(f"  {order:<10} {pay['status']:<9} {amount:>10}  {pay['paymentId']:<21} {pay.get('declineReason', '')}")

    print("\nEvents on the bus orderflow-%s" % args.stage)
    for e in sorted(seen_events, key=lambda e: e.get("time", "")):
        d = e.get("detail", {})
        data, meta = d.get("data", {}), d.get("metadata", {})
        print(f"  {e.get('time', ''):<21} {e['detail-type']:<17} from {e['source']:<18} "
              f"order {data.get('orderId', '?'):<9} correlation {meta.get('correlationId', '?')}")

    if args.dead_letter_order:
        print("\nDead-letter queue orderflow-%s-payment-dlq" % args.stage)
        for m in dead_letters:
            a = m.get("MessageAttributes", {})
            reason = a.get("FailureReason", {}).get("StringValue", "?")
            message = a.get("FailureMessage", {}).get("StringValue", "?")
            print(f"  order {args.dead_letter_order}: {reason}: {message}")
        if not dead_letters:
            print("  (nothing yet)")
    ok = len(payments) == len(args.orders)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
