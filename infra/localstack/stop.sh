#!/usr/bin/env bash
# Stops the LocalStack that start.sh started (by PID file only: a LocalStack we merely
# reused is left alone). SIGTERM, wait up to LOCALSTACK_STOP_TIMEOUT (10 s), then
# SIGKILL the whole process group, which also takes any Lambda bootstrap children.
# Safe to run when nothing runs.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
LOCAL_DIR=${ORDERFLOW_LOCAL_DIR:-$REPO_ROOT/.local}
PID_FILE=$LOCAL_DIR/localstack.pid
WAIT=${LOCALSTACK_STOP_TIMEOUT:-10}

log() { printf '[localstack] %s\n' "$*"; }

if [ ! -f "$PID_FILE" ]; then
  log "not running (no $PID_FILE); nothing to stop"
  exit 0
fi
pid=$(cat "$PID_FILE")
# Only signal the PID if it is still our LocalStack (the PID may have been recycled).
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main'; then
  log "pid ${pid:-?} is not running; removing stale pid file"
  rm -f "$PID_FILE"
  exit 0
fi

# start.sh ran LocalStack under setsid, so its process group id is its pid. Helpers
# LocalStack spawns itself (DynamoDB Local's JVM, kinesis-local for DynamoDB Streams)
# get their own process groups, so remember the whole process tree up front as well.
pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
descendants() { local c; for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done; }
tree=$(descendants "$pid" | tr '\n' ' ')
log "stopping pid $pid (SIGTERM)"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq $((WAIT * 5))); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$pid" 2>/dev/null; then
  log "still alive after ${WAIT}s: SIGKILL process group $pgid"
fi
# Always sweep: bootstrap processes and helpers may outlive a clean shutdown.
if [ -n "$pgid" ] && [ "$pgid" = "$pid" ]; then
  kill -KILL -- "-$pgid" 2>/dev/null || true
fi
# shellcheck disable=SC2086
kill -KILL "$pid" $tree 2>/dev/null || true
rm -f "$PID_FILE"
log "stopped"
