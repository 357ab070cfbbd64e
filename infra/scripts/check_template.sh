#!/usr/bin/env bash
# Template checks, for `make validate` and `make test`:
#   1. sam validate --lint on infra/template.yaml
#   2. cfn-lint with Orderflow's own rules (infra/cfn-rules: AWS behaviours LocalStack skips)
#   3. those rules against their fixtures, so a rule that stops flagging fails here
#   4. security scans: cfn-lint's informational checks and checkov (on the template and its SAM
#      translation); any finding not in infra/scan-skips.yaml (each skip says why) fails
#   5. those scans against infra/scan-fixtures/, so a scan that stops flagging fails here
# Runs all five, prints one summary line each, exits non-zero if any failed.
set -uo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

failures=0
# part <name> <command...>: runs it, shows its output, then one summary line.
part() {
  local name=$1; shift
  local output status
  output=$("$@" 2>&1); status=$?
  [ -z "$output" ] || printf '%s\n' "$output"
  if [ "$status" -eq 0 ]; then
    echo "template check: $name: pass"
  else
    echo "template check: $name: FAIL (exit $status)"
    failures=$((failures + 1))
  fi
}

part "sam validate --lint" bash -c 'cd infra && sam validate --lint --template-file template.yaml'
# The template goes before --append-rules, which takes every later argument as a rules directory.
part "cfn-lint + Orderflow rules (infra/cfn-rules)" cfn-lint infra/template.yaml --append-rules infra/cfn-rules
part "Orderflow rule fixtures" "$TOOLS/python" infra/cfn-rules/check_fixtures.py
# checkov has its own venv (infra/localstack/setup.sh); the script finds it under $LOCAL_DIR.
part "security scans: cfn-lint informational, checkov (skips: infra/scan-skips.yaml)" \
  "$TOOLS/python" infra/scripts/scan_template.py --checkov "$LOCAL_DIR/checkov-venv/bin/checkov"
part "security scan fixtures (infra/scan-fixtures)" \
  "$TOOLS/python" infra/scripts/scan_template.py --fixtures --checkov "$LOCAL_DIR/checkov-venv/bin/checkov"

[ "$failures" -eq 0 ]
