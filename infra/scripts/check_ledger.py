#!/usr/bin/env python3
"""Checks a deployed stage's books after a run: every order ended, and money and goods agree.

    source infra/scripts/env.sh
    .local/tools-venv/bin/python infra/scripts/check_ledger.py --stage dev infra/seed/inventory.json

Reads the tables the functions decide in (not the read model alone): `payments` (one item per
order: the charge and its refund), `reservations` (the stock held and its release),
`shipments` (dispatched or cancelled), `inventory` (stock levels) and the `orders` read model,
and checks what the product promises for every order:

- it is SHIPPED or CANCELLED;
- a SHIPPED order is charged and not refunded, its stock reserved and not released, its
  shipment dispatched; a CANCELLED order holds no charge, no reserved stock and no dispatch;
- no order is both dispatched and refunded or released;
- each SKU's stock is its seeded level (FILE, as seed_inventory.py takes it) minus the units
  of dispatched orders.

A charge is one item per order by construction (the payments table's key), and a refund is
recorded once on it (`refundEventId`), so "one charge, refunded at most once" is what the
items say. Prints the counts and every violation; exits 1 if there is one. Use it on a stage
whose stock was seeded from FILE before the run and that no other run shares.
"""

import argparse
import json
import sys
from collections import Counter, defaultdict

import boto3
from boto3.dynamodb.types import TypeDeserializer

TERMINAL = {"SHIPPED", "CANCELLED"}


def scan(dynamo, table: str) -> list[dict]:
    des = TypeDeserializer()
    items = []
    for page in dynamo.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items += [{k: des.deserialize(v) for k, v in item.items()} for item in page["Items"]]
    return items


def by_order(items: list[dict]) -> dict[str, dict]:
    return {i["orderId"]: i for i in items if "orderId" in i}


def check(seed: list[dict], orders, payments, reservations, shipments, stock) -> tuple[dict, list[str]]:
    """The counts and the violations (pure, for tests)."""
    problems = []
    statuses = Counter(o.get("status", "-") for o in orders.values())
    shipped_units = defaultdict(int)
    for order_id in sorted(set(orders) | set(payments) | set(reservations) | set(shipments)):
        status = orders.get(order_id, {}).get("status", "-")
        pay = payments.get(order_id, {}).get("status")
        res = reservations.get(order_id, {}).get("status")
        ship = shipments.get(order_id, {}).get("status", "DISPATCHED" if order_id in shipments else None)
        if status not in TERMINAL:
            problems.append(f"{order_id}: not ended ({status})")
        if ship == "DISPATCHED" and (pay == "REFUNDED" or res == "RELEASED"):
            problems.append(f"{order_id}: dispatched and compensated (payment {pay}, stock {res})")
        if status == "SHIPPED" and (pay, res, ship) != ("CHARGED", "RESERVED", "DISPATCHED"):
            problems.append(f"{order_id}: SHIPPED but payment {pay}, stock {res}, shipment {ship}")
        if status == "CANCELLED" and (pay == "CHARGED" or res == "RESERVED" or ship == "DISPATCHED"):
            problems.append(f"{order_id}: CANCELLED but payment {pay}, stock {res}, shipment {ship}")
        if ship == "DISPATCHED":
            for line in reservations.get(order_id, {}).get("lines", []):
                shipped_units[line["sku"]] += int(line["quantity"])
    for entry in seed:
        sku = entry["sku"]
        expected = entry["stock"] - shipped_units.get(sku, 0)
        actual = stock.get(sku)
        if actual != expected:
            problems.append(
                f"{sku}: stock {actual}, expected {entry['stock']} - {shipped_units.get(sku, 0)} shipped = {expected}"
            )
    counts = {
        "orders": len(orders),
        "statuses": dict(sorted(statuses.items())),
        "charged": sum(1 for p in payments.values() if p.get("status") == "CHARGED"),
        "refunded": sum(1 for p in payments.values() if p.get("status") == "REFUNDED"),
        "declined": sum(1 for p in payments.values() if p.get("status") == "DECLINED"),
        "reserved": sum(1 for r in reservations.values() if r.get("status") == "RESERVED"),
        "released": sum(1 for r in reservations.values() if r.get("status") == "RELEASED"),
        "outOfStock": sum(1 for r in reservations.values() if r.get("status") == "OUT_OF_STOCK"),
        "dispatched": sum(1 for s in shipments.values() if s.get("status", "DISPATCHED") == "DISPATCHED"),
        "shipmentsCancelled": sum(1 for s in shipments.values() if s.get("status") == "CANCELLED"),
        "unitsShipped": dict(sorted(shipped_units.items())),
        "stock": dict(sorted(stock.items())),
    }
    return counts, problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", required=True)
    p.add_argument("--json", action="store_true", help="print the counts and violations as JSON")
    p.add_argument("seed", help="the stock file the stage was seeded from (seed_inventory.py's FILE)")
    args = p.parse_args()
    with open(args.seed, encoding="utf-8") as f:
        seed = json.load(f)
    dynamo = boto3.client("dynamodb")
    table = lambda name: f"orderflow-{args.stage}-{name}"  # noqa: E731
    counts, problems = check(
        seed,
        by_order(scan(dynamo, table("orders"))),
        by_order(scan(dynamo, table("payments"))),
        by_order(scan(dynamo, table("reservations"))),
        by_order(scan(dynamo, table("shipments"))),
        {i["sku"]: int(i["stock"]) for i in scan(dynamo, table("inventory"))},
    )
    if args.json:
        print(json.dumps({"counts": counts, "violations": problems}, indent=2, default=int))
    else:
        for key, value in counts.items():
            print(f"{key:>18}: {value}")
        for problem in problems:
            print(f"VIOLATION {problem}")
        print(f"{len(problems)} violations")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
