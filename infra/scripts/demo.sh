#!/usr/bin/env bash
# `make demo`: sends the sample orders with the orderflow CLI, waits until they are processed,
# and shows what happened. Expects the stack to be deployed (make local-deploy).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

ORDERFLOW="${CARGO_TARGET_DIR:-$ROOT/target}/debug/orderflow"
cargo build --quiet --locked -p orderflow-cli
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "Sending the sample orders (events/samples/) to the bus orderflow-$STAGE"
for sample in order-placed order-placed-v1 order-placed-declined order-placed-malformed; do
  echo "  orderflow send events/samples/$sample.json"
  "$ORDERFLOW" send "events/samples/$sample.json" | sed 's/^/    /'
done

say "Waiting for the orders to run through payment, inventory, the saga, shipping and email"
status=0
for order in ord-1001 ord-1002; do
  echo "  orderflow order $order --wait 150"
  "$ORDERFLOW" order "$order" --wait 150 || status=1
  echo
done

say "Everything that happened to ord-1002, by cause (orderflow trace ord-1002)"
"$ORDERFLOW" trace ord-1002 || status=1

say "Dead letters: ord-1003 is malformed (orderflow dlq list; orderflow dlq show payment)"
"$ORDERFLOW" dlq list
"$ORDERFLOW" dlq show payment

say "Counters (orderflow stats)"
"$ORDERFLOW" stats

cat <<TXT

Try next (the make wrappers point the CLI at LocalStack themselves; to run target/debug/orderflow
or aws yourself, source infra/scripts/env.sh in a shell you keep for LocalStack):
  make send FILE=events/samples/order-placed.json   (again: the same event id is not charged twice)
  make trace ID=ord-1001 MERMAID=1   (the order's causal tree as a mermaid sequence diagram)
  make order ID=ord-1001             (read model and timeline; add AS_OF=<time> for time travel)
  make load N=20 RATE=5              (throughput and latency percentiles, per hop)
  make redrive Q=payment DRY_RUN=1   (what a redrive would move, and what it refuses)
  make logs FN=payment               (a function's JSON logs, with correlation ids)
  make test                          (unit and end-to-end tests)
Stop with: make local-down
TXT
exit "$status"
