#!/usr/bin/env bash
# Starts LocalStack as a plain background process (no Docker) and waits until
# /_localstack/health answers. Reuses a LocalStack that is already listening.
#
# Env: LOCALSTACK_PORT (4566), LOCALSTACK_START_TIMEOUT (90 s), ORDERFLOW_LOCAL_DIR
# (.local), LOCALSTACK_SERVICES (list below), DEBUG (0/1, passed to LocalStack).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
LOCAL_DIR=${ORDERFLOW_LOCAL_DIR:-$REPO_ROOT/.local}
PORT=${LOCALSTACK_PORT:-4566}
TIMEOUT=${LOCALSTACK_START_TIMEOUT:-90}
PID_FILE=$LOCAL_DIR/localstack.pid
LOG_FILE=$LOCAL_DIR/localstack.log
HEALTH_URL=http://127.0.0.1:$PORT/_localstack/health

log() { printf '[localstack] %s\n' "$*"; }
die() { printf '[localstack] ERROR: %s\n' "$*" >&2; exit 1; }
healthy() { curl -sf -m 2 "$HEALTH_URL" >/dev/null 2>&1; }
# Our process: alive and really LocalStack (guards against a recycled PID).
ours_alive() {
  [ -f "$PID_FILE" ] || return 1
  local pid; pid=$(cat "$PID_FILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main'
}

command -v curl >/dev/null || die "curl is required"
[ -x "$LOCAL_DIR/venv/bin/python" ] || die "no LocalStack venv in $LOCAL_DIR/venv: run infra/localstack/setup.sh first"

if ours_alive; then
  if healthy; then log "already running (pid $(cat "$PID_FILE"), port $PORT)"; exit 0; fi
  log "pid $(cat "$PID_FILE") is starting; waiting for it"
else
  rm -f "$PID_FILE"
  if healthy; then
    # Someone else's LocalStack (another checkout, a container...): use it, don't own it.
    log "something already answers $HEALTH_URL and it is not ours: reusing it (stop.sh will leave it alone)"
    exit 0
  fi

  FILESYSTEM_ROOT=$LOCAL_DIR/localstack
  # TMPDIR: LocalStack keeps its tmp folder and the unzipped Lambda code under the
  # system temp dir; keep that in .local/ too.
  mkdir -p "$FILESYSTEM_ROOT" "$LOCAL_DIR/tmp"
  log "starting on 127.0.0.1:$PORT (log: $LOG_FILE)"
  printf '\n===== start %s =====\n' "$(date -Is)" >>"$LOG_FILE"
  # Why each setting (see shared/local-aws.md):
  #  OVERRIDE_IN_DOCKER=0   this host has /.dockerenv; LocalStack would write to /var/lib/localstack
  #  FILESYSTEM_ROOT        all state (incl. DynamoDB Local jar) lives under .local/
  #  DNS_ADDRESS=0          no DNS server (would need port 53)
  #  SQS_ENDPOINT_STRATEGY  path-style queue URLs; the default host names do not resolve offline
  #  LAMBDA_RUNTIME_EXECUTOR our plugin runs bootstrap binaries as local processes
  #  DISABLE_EVENTS=1       4.13.1 ignores LOCALSTACK_TELEMETRY_DISABLED; without this the
  #                         shutdown hook retries posting analytics offline and SIGTERM takes >10 s
  #  LAMBDA_EVENT_SOURCE_MAPPING_*  how LocalStack's event source mappings wait between polls.
  #                         Its defaults (1 s after every batch, backing off to 10 s on an empty
  #                         queue or stream) put up to 10 s on each hop of an idle pipeline. AWS
  #                         keeps long-polling the queue instead ("Lambda uses long polling to poll
  #                         a queue until it becomes active", Using Lambda with Amazon SQS,
  #                         https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html), so an idle
  #                         hop costs milliseconds there. Polling again at once after a batch and
  #                         capping the empty backoff at LocalStack's 1 s floor brings it closer.
  #                         Configuration, not a patch; batching windows still apply as on AWS.
  # setsid: LocalStack leads its own process group, so stop.sh can kill it together
  # with every bootstrap child in one go.
  cd "$REPO_ROOT"
  env OVERRIDE_IN_DOCKER=0 \
    FILESYSTEM_ROOT="$FILESYSTEM_ROOT" \
    TMPDIR="$LOCAL_DIR/tmp" \
    GATEWAY_LISTEN="127.0.0.1:$PORT" \
    LOCALSTACK_HOST="127.0.0.1:$PORT" \
    DNS_ADDRESS=0 \
    SQS_ENDPOINT_STRATEGY=path \
    LOCALSTACK_TELEMETRY_DISABLED=1 \
    DISABLE_EVENTS=1 \
    LAMBDA_RUNTIME_EXECUTOR=orderflow-local \
    SERVICES="${LOCALSTACK_SERVICES:-cloudformation,s3,sqs,events,dynamodb,dynamodbstreams,lambda,logs,iam,sts,ses,kms,cloudwatch,sns,ssm}" \
    LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC="${LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC:-0}" \
    LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC="${LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC:-1}" \
    DEBUG="${DEBUG:-0}" \
    setsid "$LOCAL_DIR/venv/bin/python" -m localstack.runtime.main >>"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
fi

pid=$(cat "$PID_FILE")
start=$(date +%s.%N)
deadline=$(( $(date +%s) + TIMEOUT ))
until healthy; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$PID_FILE"
    tail -n 40 "$LOG_FILE" >&2
    die "LocalStack (pid $pid) exited during startup; log above, full log: $LOG_FILE"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 40 "$LOG_FILE" >&2
    "$SCRIPT_DIR/stop.sh" >&2 || true  # don't leave a half-started LocalStack behind
    die "LocalStack not healthy after ${TIMEOUT}s (stopped it again); full log: $LOG_FILE"
  fi
  sleep 0.3
done
log "ready in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")s (pid $pid): http://127.0.0.1:$PORT"
