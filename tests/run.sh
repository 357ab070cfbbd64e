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
(cd infra && sam validate --lint --template-file template.yaml && cfn-lint template.yaml)

step "build functions and tests"
cargo build --locked --workspace --bins
cargo test --locked --workspace --no-run

step "unit tests"
cargo test --locked --workspace

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
cargo test --locked --workspace -- --ignored --test-threads "${E2E_THREADS:-8}"

step "all tests passed"
[ "$started_here" = yes ] || echo "(LocalStack was already running; left it running)"
