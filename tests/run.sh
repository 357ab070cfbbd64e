#!/usr/bin/env bash
# `make test`: lint, template checks, one build of everything, unit tests, then the integration
# and end-to-end tests against LocalStack. Starts LocalStack unless one is already running,
# and stops what it started even when tests fail.
set -euo pipefail
export STAGE="${TEST_STAGE:-test}"
source "$(dirname "$0")/../infra/scripts/env.sh"
cd "$ROOT"

t0=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }
# Every runner's output is kept, so that the run ends with one line counting all tests.
RESULTS="$LOCAL_DIR/test-results.log"
mkdir -p "$LOCAL_DIR" && : >"$RESULTS"
record() { tee -a "$RESULTS"; }

# What `make lint` runs (infra/scripts/lint.sh), so that CI (.ci/run is `make test`) fails on
# what a developer's `make lint` flags. Not `make lint` itself: its `setup` prerequisite would
# run setup.sh with env.sh's PATH, whose python3.11 is the tools venv's own, and rebuild that venv.
step "lint: ruff (infra/ruff.toml), rustfmt --check, clippy -D warnings"
lint_started=$(date +%s)
infra/scripts/lint.sh
echo "lint: $(( $(date +%s) - lint_started )) s"

step "template: sam validate --lint, cfn-lint, security scans (cfn-lint informational checks, checkov)"
infra/scripts/check_template.sh 2>&1 | record

step "build functions and tests"
cargo build --locked --workspace --bins
cargo test --locked --workspace --no-run

step "unit tests"
cargo test --locked --workspace 2>&1 | record
step "unit tests of the LocalStack plugins (Lambda executor, IAM evaluator, request mapping)"
"$LOCAL_DIR/venv/bin/python" -m pytest -q -p no:cacheprovider infra/localstack/tests 2>&1 | record

started_here=no
proxy_pid=
cleanup() {
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  if [ "$started_here" = yes ]; then step "stopping LocalStack"; infra/localstack/stop.sh || true; fi
}
trap cleanup EXIT
health="http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health"
if ! curl -sf -m 2 "$health" >/dev/null 2>&1; then
  started_here=yes
fi
step "LocalStack"
infra/localstack/start.sh

step "deploy stack orderflow-$STAGE"
# Two producers in other accounts, so that the bus policy's statements for them are deployed
# and read back (tests/e2e/tests/operations.rs). LocalStack's SES has no sending rate, and
# GetSendQuota answers the sandbox's 1/s: at that pace the suite's hundreds of emails would
# take longer than its deadlines, so the test stage states a rate (make local-deploy keeps
# the default, 0 = GetSendQuota, as on AWS). The rate limiter has its own unit tests.
# A short order deadline and shipping hold (the hold still longer than the fraud window, which
# shipping checks at start-up), so that the tests of both end in minutes rather than the
# defaults' 15 and 5. The outbox outage test (tests/e2e/tests/outbox.rs) needs the stream to
# give up within seconds and the sweep to take decisions 30 s old (defaults: 3 retries, 300 s);
# other tests are not slowed: a sweep publishes only what the stream relay left for 30 s, under
# its stored id.
PARAMETER_OVERRIDES="ProducerAccounts=111111111111:orderflow.orders,222222222222:orderflow.customers EmailMaxSendRate=50 OrderDeadlineSeconds=90 ShipmentHoldSeconds=40 FraudWindowSeconds=20 OutboxStreamRetries=1 OutboxSweepMinAgeSeconds=30" \
  infra/scripts/deploy_local.sh

# The executor's own logic is unit-tested above (test_executor.py); this checks its glue with
# LocalStack's Lambda service: State=Failed for refused runtimes, FunctionError for timeouts and
# crashes through the Invoke API, --log-type Tail, SQS and DynamoDB stream event source mappings
# with ReportBatchItemFailures and redrive. Before the e2e tests, so neither slows the other.
step "LocalStack Lambda executor smoke test (infra/localstack/check_executor.sh)"
infra/localstack/check_executor.sh 2>&1 | record

step "integration and end-to-end tests: the AWS-mode suite through a proxy that refuses LocalStack's own endpoints, and the LocalStack-only tests"
# On the one stack, one after the other (cargo holds its build lock while tests run):
# - [aws-mode] the e2e suite exactly as `make test-aws` runs it against a stage on AWS
#   (tests/run_aws.sh), here against LocalStack through infra/localstack/aws_only_proxy.py,
#   which refuses LocalStack's own endpoints (/_aws/..., /_localstack/..., /_orderflow/...)
#   and records each refusal: the suite that users run on AWS needs nothing AWS lacks;
# - [localstack] what does need LocalStack: the e2e tests in `localstack_only` modules, and
#   the library crates' integration tests (LocalStack and DynamoDB Local, no stack).
refusals="$LOCAL_DIR/aws-only-refusals.log"
proxy_port=$("$TOOLS/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TOOLS/python" infra/localstack/aws_only_proxy.py --port "$proxy_port" --upstream "$AWS_ENDPOINT_URL" \
  --refusals "$refusals" &
proxy_pid=$!
for _ in $(seq 1 50); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$proxy_port/" && break; sleep 0.2; done
AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port" tests/run_aws.sh 2>&1 | sed -u 's/^/[aws-mode] /' | record \
  || e2e_failed=$?
kill "$proxy_pid" 2>/dev/null || true
proxy_pid=
{ cargo test --locked --no-fail-fast --workspace --exclude e2e -- --ignored --test-threads 2 \
  && cargo test --locked --no-fail-fast -p e2e -- --ignored localstack_only:: --test-threads 4; } 2>&1 \
  | sed -u 's/^/[localstack] /' | record || e2e_failed=$?
if [ -s "$refusals" ]; then
  echo "FAILED: the AWS-mode suite asked for LocalStack-only endpoints (move those tests into a localstack_only module):" >&2
  cat "$refusals" >&2
  e2e_failed=1
else
  echo "aws-mode suite: no request for a LocalStack-only endpoint"
fi

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
# cargo: "test result: ok. N passed; M failed" (e2e lines prefixed [aws-mode] or [localstack]); pytest: "N passed in 0.6s"; the rule and
# scan fixtures: "N passed, M failed".
awk '/^(\[[a-z-]+\] )?test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) == "passed;") p += $i; if ($(i+1) == "failed;") f += $i } }
     /^[0-9]+ passed(,| in)/ { p += $1 }
     END { printf "%d passed, %d failed\n", p, f }' "$RESULTS"
[ "$started_here" = yes ] || echo "(LocalStack was already running; left it running)"
