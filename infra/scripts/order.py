#!/usr/bin/env python3
"""`make order ID=ord-1001 [AS_OF=2026-11-21T10:00:00Z]`: shows one order, readably.

Invokes the order-query function with the AWS CLI (as users would) and prints the read
model, or with AS_OF the order rebuilt from its event stream as it was at that time.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def invoke(stage: str, payload: dict) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            ["aws", "--endpoint-url", os.environ["AWS_ENDPOINT_URL"], "lambda", "invoke",
             "--function-name", f"orderflow-{stage}-order-query",
             "--payload", json.dumps(payload), out.name],
            check=True, stdout=subprocess.DEVNULL)
        return json.load(open(out.name))


def amount(minor, currency):
    return f"{int(minor) / 100:.2f} {currency}" if currency else "-"


def show(title: str, view: dict) -> None:
    print(title)
    if not view:
        print("  (no such order)")
        return
    print(f"  status     {view['status']}" + (f" ({view['cancelReason']})" if view.get("cancelReason") else ""))
    print(f"  customer   {view.get('customerId', '')} <{view.get('customerEmail', '')}>")
    print(f"  total      {amount(view.get('total', 0), view.get('currency'))}")
    for line in view.get("lines", []):
        print(f"    {line['quantity']} x {line['sku']} at {amount(line['unitPrice'], view.get('currency'))}")
    if view.get("payment"):
        p = view["payment"]
        print(f"  payment    {p['status']} {p['paymentId']}" + (f" ({p['reason']})" if p.get("reason") else ""))
    if view.get("reservation"):
        r = view["reservation"]
        print(f"  stock      {r['status']} {r.get('reservationId', '')} {'; '.join(r.get('shortages', []))}")
    if view.get("shipment"):
        s = view["shipment"]
        print(f"  shipment   {s['carrier']} {s['trackingNumber']}")
    if view.get("compensations"):
        print(f"  compensate {', '.join(view['compensations'])}")
    print("  timeline")
    for t in view.get("timeline", []):
        print(f"    v{t['version']:<3} {t['at']}  {t['type']:<26} {t['summary']}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("order_id")
    p.add_argument("--stage", default=os.environ.get("STAGE", "dev"))
    p.add_argument("--as-of", default="")
    args = p.parse_args()
    payload = {"orderId": args.order_id}
    if args.as_of:
        payload["asOf"] = args.as_of
    answer = invoke(args.stage, payload)
    if "errorMessage" in answer:
        print(f"error: {answer.get('errorType')}: {answer['errorMessage']}", file=sys.stderr)
        return 1
    if args.as_of:
        show(
            f"Order {args.order_id} as of {answer.get('asOf')} (rebuilt from its event stream)",
            answer.get("fromEvents"),
        )
        print()
    show(f"Order {args.order_id} (read model)", answer.get("readModel"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
