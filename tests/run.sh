#!/usr/bin/env bash
# `make test`: template checks, one build of everything, unit tests, then the integration
# and end-to-end tests against LocalStack. Starts LocalStack unless one is already running,
# and stops what it started even when tests fail.
set -euo pipefail
export STAGE="${TEST_STAGE:-test}"
source "$(dirname "$0")/../infra/scripts/env.sh"
cd "$ROOT"

t0=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

step "template: sam validate --lint, cfn-lint"
infra/scripts/check_template.sh

step "build functions and tests"
cargo build --locked --workspace --bins
cargo test --locked --workspace --no-run

step "unit tests"
cargo test --locked --workspace
step "unit tests of the LocalStack plugins (IAM evaluator, request mapping)" && "$LOCAL_DIR/venv/bin/python" -m pytest -q -p no:cacheprovider infra/localstack/tests

started_here=no
health="http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health"
if ! curl -sf -m 2 "$health" >/dev/null 2>&1; then
  started_here=yes
  trap 'step "stopping LocalStack"; infra/localstack/stop.sh || true' EXIT
fi
step "LocalStack"
infra/localstack/start.sh

step "deploy stack orderflow-$STAGE"
infra/scripts/deploy_local.sh

step "integration and end-to-end tests"
export ORDERFLOW_STAGE="$STAGE"
cargo test --locked --workspace -- --ignored --test-threads "${E2E_THREADS:-8}" || e2e_failed=$?

# Every AWS request the functions made above was checked against their deployed roles
# (infra/localstack/orderflow_local_lambda/iam_enforcer.py). Runs even when the e2e tests
# failed: a denied permission is usually why they failed.
step "IAM: the functions' requests against their roles"
iam_failed=0
"$LOCAL_DIR/venv/bin/python" -m orderflow_local_lambda.iam_report --prefix "orderflow-$STAGE-" --since "$t0" || iam_failed=$?
if [ "${e2e_failed:-0}" -ne 0 ] || [ "$iam_failed" -ne 0 ]; then
  [ "${e2e_failed:-0}" -eq 0 ] || echo "FAILED: end-to-end tests (exit $e2e_failed)" >&2
  [ "$iam_failed" -eq 0 ] || echo "FAILED: IAM report: requests denied or permissions missing (above)" >&2
  exit 1
fi

step "all tests passed"
[ "$started_here" = yes ] || echo "(LocalStack was already running; left it running)"
