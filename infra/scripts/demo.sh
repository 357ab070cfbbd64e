#!/usr/bin/env bash
# `make demo`: sends the sample orders with the AWS CLI, waits until they are processed,
# and prints what happened. Expects the stack to be deployed (make local-deploy).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

BUS="orderflow-$STAGE"
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# An observer queue + rule, so the demo can show every event the functions publish.
OBSERVER="orderflow-$STAGE-demo-observer"
observer_url=$(awsl sqs create-queue --queue-name "$OBSERVER" --query QueueUrl --output text)
observer_arn=$(awsl sqs get-queue-attributes --queue-url "$observer_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)
awsl events put-rule --name "$OBSERVER" --event-bus-name "$BUS" \
  --event-pattern '{"source":[{"prefix":"orderflow."}]}' >/dev/null
awsl events put-targets --rule "$OBSERVER" --event-bus-name "$BUS" \
  --targets "Id=observer,Arn=$observer_arn" >/dev/null
awsl sqs purge-queue --queue-url "$observer_url" >/dev/null 2>&1 || true

say "Sending the sample orders (events/samples/) to the bus $BUS"
for sample in order-placed order-placed-v1 order-placed-declined order-placed-malformed; do
  # The samples name the dev bus; point them at this stage's bus.
  echo "  aws events put-events --entries file://events/samples/$sample.json"
  if [ "$STAGE" = dev ]; then
    entries="file://events/samples/$sample.json"
  else
    entries=$(sed "s/\"orderflow-dev\"/\"$BUS\"/" "events/samples/$sample.json")
  fi
  awsl events put-events --entries "$entries" --query 'FailedEntryCount' --output text | sed 's/^/    failed entries: /'
done

say "Waiting for the orders to run through payment, inventory, the saga, shipping and email"
"$TOOLS/python" infra/scripts/demo_report.py --stage "$STAGE" --observer "$observer_url" \
  --orders ord-1001 ord-1002 --dead-letter-order ord-1003 --skus MUG-RED TEA-GREEN

cat <<TXT

Try next (first, in your shell: source infra/scripts/env.sh):
  aws events put-events --endpoint-url $AWS_ENDPOINT_URL --entries file://events/samples/order-placed.json
                                   (again: the same event id is not charged twice)
  make order ID=ord-1001           (the order's read model and timeline; add AS_OF=<time> for time travel)
  make logs FN=payment             (a function's JSON logs, with correlation ids)
  aws dynamodb scan --endpoint-url $AWS_ENDPOINT_URL --table-name orderflow-$STAGE-payments
  make test                        (unit and end-to-end tests)
Stop with: make local-down
TXT
