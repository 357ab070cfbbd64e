#!/usr/bin/env bash
# Kills a random running function process (SIGKILL, as a Lambda sandbox that runs out of
# memory or time dies) every few seconds, until stopped: the fault of `make chaos`.
# Only the local executor's processes under .local/tmp/lambda are touched.
# Usage: infra/scripts/kill_functions.sh [MIN_SECONDS] [MAX_SECONDS]  (default 3 8)
set -u
root="$(cd "$(dirname "$0")/../.." && pwd)"
min="${1:-3}"
max="${2:-8}"
kills=0
trap 'echo "[chaos] killed $kills function processes"; exit 0' TERM INT
while true; do
  sleep "$(( min + RANDOM % (max - min + 1) ))"
  mapfile -t pids < <(pgrep -f "$root/.local/tmp/lambda/.*/bootstrap" || true)
  [ "${#pids[@]}" -gt 0 ] || continue
  pid="${pids[RANDOM % ${#pids[@]}]}"
  name="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | sed -E 's#.*/(orderflow-[a-z0-9-]+)-[0-9a-f]{8}-.*#\1#')"
  if kill -9 "$pid" 2>/dev/null; then
    kills=$((kills + 1))
    echo "[chaos] $(date -u +%H:%M:%S) killed $name (pid $pid)"
  fi
done
