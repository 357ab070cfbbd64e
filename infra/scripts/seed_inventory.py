#!/usr/bin/env python3
"""Sets stock levels and catalogue prices in the inventory table of a deployed Orderflow stage.

    source infra/scripts/env.sh
    .local/tools-venv/bin/python infra/scripts/seed_inventory.py --stage dev infra/seed/inventory.json

FILE is a JSON list of {"sku": "...", "name": "...", "stock": N, "price": P, "currency": "EUR"}
("name" optional; the rest required). "price" is the catalogue price of one unit in minor
units of "currency" (a whole number >= 1; 1250 EUR is 12.50 EUR), "currency" an ISO 4217
code (three upper-case letters). The payment function charges an order only if every line's
unitPrice and the order's currency are exactly these, and declines it (`price-mismatch`)
otherwise, so a SKU without a price is not for sale.

Each SKU's item is replaced with exactly that level and price, so running it again changes
nothing and running it after orders reset their stock: use it to restock or reprice, not to
add. SKUs not in the file are left alone. `deploy_local.sh` runs it after each deploy; the
endpoint and credentials come from the environment (AWS_ENDPOINT_URL for LocalStack, as
infra/scripts/env.sh exports).
"""
import argparse
import json
import re
import sys

import boto3

MAX_SKU_LENGTH = 64  # as OrderLine.sku
CURRENCY = re.compile(r"[A-Z]{3}")  # as contracts::Currency
FIELDS = {"sku", "name", "stock", "price", "currency"}


def whole_number(value) -> bool:
    # bool is an int in Python; `true` is not a number of anything.
    return isinstance(value, int) and not isinstance(value, bool)


def load(path: str) -> list[dict]:
    """The file's entries, checked, so that a typo fails before anything is written."""
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    if not isinstance(entries, list) or not entries:
        raise ValueError("expected a non-empty JSON list of {sku, name, stock, price, currency}")
    seen = set()
    for i, e in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: expected an object")
        sku = e.get("sku")
        if not isinstance(sku, str) or not sku.strip() or len(sku) > MAX_SKU_LENGTH:
            raise ValueError(f"{where}: sku must be a non-empty string of at most {MAX_SKU_LENGTH} characters")
        if sku in seen:
            raise ValueError(f"{where}: sku {sku} appears twice")
        seen.add(sku)
        stock = e.get("stock")
        if not whole_number(stock) or stock < 0:
            raise ValueError(f"{where} ({sku}): stock must be a whole number >= 0")
        price = e.get("price")
        if not whole_number(price) or price < 1:
            raise ValueError(f"{where} ({sku}): price must be a whole number >= 1 (minor units)")
        currency = e.get("currency")
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            raise ValueError(f"{where} ({sku}): currency must be an ISO 4217 code, three upper-case letters")
        if "name" in e and not isinstance(e["name"], str):
            raise ValueError(f"{where} ({sku}): name must be a string")
        unknown = set(e) - FIELDS
        if unknown:
            raise ValueError(f"{where} ({sku}): unknown fields {sorted(unknown)}")
    return entries


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", required=True, help="the stage: table orderflow-<stage>-inventory")
    p.add_argument("file", help="JSON list of {sku, name, stock, price, currency}")
    args = p.parse_args()

    try:
        entries = load(args.file)
    except (OSError, ValueError) as e:
        print(f"seed_inventory: {args.file}: {e}", file=sys.stderr)
        return 2

    table = f"orderflow-{args.stage}-inventory"
    dynamo = boto3.client("dynamodb")
    for e in entries:
        # One item: the price lives with the stock, and a PutItem without it would take the
        # SKU off sale.
        item = {
            "sku": {"S": e["sku"]},
            "stock": {"N": str(e["stock"])},
            "price": {"N": str(e["price"])},
            "currency": {"S": e["currency"]},
        }
        if e.get("name"):
            item["name"] = {"S": e["name"]}
        dynamo.put_item(TableName=table, Item=item)
    levels = ", ".join(f"{e['sku']}={e['stock']} at {e['price']} {e['currency']}" for e in entries)
    print(f"stock and prices set in {table}: {levels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
