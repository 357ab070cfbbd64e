"""infra/scripts/check_ledger.py's checks over hand-made tables (no AWS)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_ledger.py"
spec = importlib.util.spec_from_file_location("check_ledger", SCRIPT)
ledger = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ledger)

SEED = [{"sku": "MUG", "stock": 10, "price": 1250, "currency": "EUR"}]
LINES = [{"sku": "MUG", "quantity": 2}]


def books(**overrides):
    """A shipped order and a cancelled one whose stock was given back, as the tables hold them."""
    tables = {
        "orders": {"o1": {"orderId": "o1", "status": "SHIPPED"}, "o2": {"orderId": "o2", "status": "CANCELLED"}},
        "payments": {"o1": {"status": "CHARGED"}, "o2": {"status": "REFUNDED"}},
        "reservations": {"o1": {"status": "RESERVED", "lines": LINES}, "o2": {"status": "RELEASED", "lines": LINES}},
        "shipments": {"o1": {"status": "DISPATCHED"}, "o2": {"status": "CANCELLED"}},
        "stock": {"MUG": 8},
    }
    tables.update(overrides)
    return ledger.check(
        SEED, tables["orders"], tables["payments"], tables["reservations"], tables["shipments"], tables["stock"]
    )


def test_books_that_agree_have_no_violation():
    counts, problems = books()
    assert problems == []
    assert counts["statuses"] == {"CANCELLED": 1, "SHIPPED": 1}
    assert counts["unitsShipped"] == {"MUG": 2}


def test_an_order_that_did_not_end_is_a_violation():
    _, problems = books(orders={"o1": {"status": "SHIPPED"}, "o2": {"status": "PENDING"}})
    assert problems == ["o2: not ended (PENDING)"]


def test_a_dispatched_order_that_was_refunded_is_a_violation():
    _, problems = books(payments={"o1": {"status": "REFUNDED"}, "o2": {"status": "REFUNDED"}})
    assert "o1: dispatched and compensated (payment REFUNDED, stock RESERVED)" in problems


def test_a_cancelled_order_that_keeps_its_stock_is_a_violation():
    _, problems = books(
        reservations={"o1": {"status": "RESERVED", "lines": LINES}, "o2": {"status": "RESERVED", "lines": LINES}}
    )
    assert problems == ["o2: CANCELLED but payment REFUNDED, stock RESERVED, shipment CANCELLED"]


def test_stock_that_is_not_the_seed_minus_what_shipped_is_a_violation():
    _, problems = books(stock={"MUG": 10})
    assert problems == ["MUG: stock 10, expected 10 - 2 shipped = 8"]


def test_a_shipment_item_without_status_is_a_dispatch():
    # As items written before shipments could be cancelled.
    _, problems = books(shipments={"o1": {}, "o2": {"status": "CANCELLED"}})
    assert problems == []
