#!/usr/bin/env bash
# Deploys infra/template.yaml to LocalStack with the functions built for this host.
# A second run updates the stack in place (no change: nothing happens).
# PARAMETER_OVERRIDES="Key=Value ..." adds template parameters (tests/run.sh: ProducerAccounts).
# TEMPLATE=path deploys another template instead (e.g. a copy with a permission removed, to
# see the local IAM enforcement fail); it is packaged into its own .aws-sam/local-<stage>.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

BIN_DIR="${BIN_DIR:-$ROOT/target/debug}"
TEMPLATE="${TEMPLATE:-}"
OUT="$ROOT/.aws-sam/local${TEMPLATE:+-$STAGE}"
BUCKET="orderflow-local-artifacts"

"$TOOLS/python" infra/scripts/package_local.py "${TEMPLATE:-infra/template.yaml}" "$BIN_DIR" "$OUT"
awsl s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1 || awsl s3 mb "s3://$BUCKET" >/dev/null

echo "deploying stack $STACK_NAME to $AWS_ENDPOINT_URL (architecture $HOST_ARCH)"
start=$(date +%s)
sam deploy \
  --template-file "$OUT/template.json" \
  --stack-name "$STACK_NAME" \
  --s3-bucket "$BUCKET" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --parameter-overrides "Stage=$STAGE" "LogLevel=${LOG_LEVEL:-info}" ${PARAMETER_OVERRIDES:-} \
  --no-confirm-changeset --no-fail-on-empty-changeset --no-progressbar \
  > "$LOCAL_DIR/deploy-$STAGE.log" 2>&1 || {
    tail -n 40 "$LOCAL_DIR/deploy-$STAGE.log"
    echo "deploy failed; full log: $LOCAL_DIR/deploy-$STAGE.log" >&2
    exit 1
  }
status=$(awsl cloudformation describe-stacks --stack-name "$STACK_NAME" --query 'Stacks[0].StackStatus' --output text)
echo "stack $STACK_NAME: $status in $(( $(date +%s) - start ))s"
case "$status" in
  CREATE_COMPLETE|UPDATE_COMPLETE) ;;
  *) echo "unexpected stack status $status; see $LOCAL_DIR/deploy-$STAGE.log" >&2; exit 1 ;;
esac

# SES only sends from verified identities (LocalStack enforces it too).
sender=$(awsl cloudformation describe-stacks --stack-name "$STACK_NAME" \
  --query "Stacks[0].Outputs[?OutputKey=='EmailSender'].OutputValue" --output text)
if [ -n "$sender" ] && [ "$sender" != None ]; then
  awsl ses verify-email-identity --email-address "$sender"
fi

# Stock for the inventory service (idempotent: sets levels, does not add).
if [ -f infra/scripts/seed_inventory.py ] && [ -f infra/seed/inventory.json ]; then
  "$TOOLS/python" infra/scripts/seed_inventory.py --stage "$STAGE" infra/seed/inventory.json
fi
