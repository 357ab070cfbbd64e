#!/usr/bin/env bash
# `make test-aws STAGE=<stage>`: the end-to-end suite (tests/e2e) against a stack you deployed
# (`sam deploy`, stack orderflow-<stage>), through the AWS SDK's and CLI's normal credential
# and endpoint chain: AWS_PROFILE, AWS_REGION, SSO, instance roles, as for any AWS tool.
# Tests that need a hook only LocalStack has live in `localstack_only` modules: they are
# skipped here and listed first.
#
# `make test` runs this same script against LocalStack, through a proxy that refuses
# LocalStack's own endpoints (AWS_ENDPOINT_URL=<the proxy>), to show that nothing here needs
# more than AWS has. Set AWS_ENDPOINT_URL yourself only to do the same.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL_DIR="${ORDERFLOW_LOCAL_DIR:-$PWD/.local}"
: "${STAGE:?usage: make test-aws STAGE=<stage of a deployed stack orderflow-<stage>>}"
export STAGE ORDERFLOW_TARGET=aws
# The harness reads logs with the AWS CLI: yours if you have one, else the tools venv's.
export PATH="$PATH:$LOCAL_DIR/tools-venv/bin"

if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
  echo "test-aws: stack orderflow-$STAGE at AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL (not AWS itself)"
else
  echo "test-aws: stack orderflow-$STAGE on AWS, as $(aws sts get-caller-identity --query Arn --output text)," \
       "region ${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || echo '?')}}"
fi
aws cloudformation describe-stacks --stack-name "orderflow-$STAGE" --query 'Stacks[0].StackStatus' \
  --output text >/dev/null || { echo "test-aws: no stack orderflow-$STAGE here; deploy it first (README)" >&2; exit 2; }

echo "test-aws: skipped, because they need LocalStack-only hooks (make test runs them):"
cargo test --locked -p e2e -- --ignored --list localstack_only:: 2>/dev/null | sed -n 's/: test$//p' | sed 's/^/  /'
cargo test --locked --no-fail-fast -p e2e -- --ignored --skip localstack_only:: --test-threads "${E2E_THREADS:-8}"
