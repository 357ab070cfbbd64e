# Sourced by the Makefile's scripts: where LocalStack is and how to reach it.
# Everything can be overridden from the environment.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="${ORDERFLOW_LOCAL_DIR:-$ROOT/.local}"
TOOLS="$LOCAL_DIR/tools-venv/bin"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
STAGE="${STAGE:-dev}"
STACK_NAME="orderflow-$STAGE"
# The Rust release rustfmt and clippy run with in `make test` and `make lint` (tests/run.sh).
LINT_RUST="${LINT_RUST:-1.95.0}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:$LOCALSTACK_PORT}"
# LocalStack accepts any credentials; these are not secrets.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_REGION="$AWS_DEFAULT_REGION"
export SAM_CLI_TELEMETRY=0
export PATH="$TOOLS:$PATH"
case "$(uname -m)" in
  aarch64|arm64) HOST_ARCH=arm64 ;;
  *) HOST_ARCH=x86_64 ;;
esac
# The AWS CLI v1 `sqs` commands ignore AWS_ENDPOINT_URL, so always pass it.
awsl() { aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
