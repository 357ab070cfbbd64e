"""Checks that each Orderflow cfn-lint rule still flags its bad fixture, and only that rule.

    python infra/cfn-rules/check_fixtures.py      # with the tools venv's python (cfn-lint on PATH)

`fixtures/E91xx-*.yaml` must be flagged by exactly rule E91xx among our rules, `fixtures/good*.yaml`
by none of them; no fixture may raise any other cfn-lint error (so each one tests the rule on
an otherwise valid template), and every rule must have a fixture. Runs cfn-lint once over all
fixtures (`--format json`), because each cfn-lint start costs about 2 s.

cfn-lint imports every `.py` file in this folder when loading rules; this module defines
no rule and runs nothing on import.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent
FIXTURES_DIR = RULES_DIR / "fixtures"
FIXTURE_RULE_ID = re.compile(r"^(E9\d{3})-")


def our_rule_ids() -> set[str]:
    from cfnlint.helpers import load_plugins

    return {rule.id for rule in load_plugins(str(RULES_DIR))}


def expected_rule_ids(fixture: Path) -> set[str] | None:
    if fixture.name.startswith("good"):
        return set()
    found = FIXTURE_RULE_ID.match(fixture.name)
    return {found.group(1)} if found else None


def lint(fixtures: list[Path]) -> dict[str, list[dict]]:
    cfn_lint = shutil.which("cfn-lint")
    if cfn_lint is None:
        sys.exit("cfn-lint is not on PATH (source infra/scripts/env.sh)")
    # Templates first: --append-rules takes every following argument as a rules directory.
    run = subprocess.run(
        [cfn_lint, "--format", "json", *map(str, fixtures), "--append-rules", str(RULES_DIR)],
        capture_output=True,
        text=True,
    )
    # cfn-lint's exit code is a bit mask: 1 = it could not run; 2/4/8 = errors/warnings/infos found.
    if run.returncode & 1:
        sys.exit(f"cfn-lint failed (exit {run.returncode}):\n{run.stderr}{run.stdout}")
    matches_by_file: dict[str, list[dict]] = {str(f): [] for f in fixtures}
    for match in json.loads(run.stdout or "[]"):
        matches_by_file.setdefault(match["Filename"], []).append(match)
    return matches_by_file


def main() -> int:
    rule_ids = our_rule_ids()
    fixtures = sorted(FIXTURES_DIR.glob("*.yaml"))
    matches_by_file = lint(fixtures)
    passed = failed = 0
    covered: set[str] = set()
    for fixture in fixtures:
        expected = expected_rule_ids(fixture)
        matches = matches_by_file.get(str(fixture), [])
        ours = {m["Rule"]["Id"] for m in matches if m["Rule"]["Id"] in rule_ids}
        other_errors = [m for m in matches if m["Rule"]["Id"] not in rule_ids and m["Level"] == "Error"]
        problems = []
        if expected is None:
            problems.append("name it good*.yaml or E9xxx-*.yaml")
        elif ours != expected:
            problems.append(f"expected {sorted(expected) or 'no rule'}, flagged by {sorted(ours) or 'no rule'}")
        problems += [f"other cfn-lint error {m['Rule']['Id']}: {m['Message']}" for m in other_errors]
        covered |= ours & (expected or set())
        if problems:
            failed += 1
            print(f"FAIL {fixture.name}: " + "; ".join(problems))
        else:
            passed += 1
            print(f"ok   {fixture.name}: {', '.join(sorted(ours)) or 'no Orderflow rule flags it'}")
    for rule_id in sorted(rule_ids - covered):
        failed += 1
        print(f"FAIL {rule_id}: no fixture shows it flagging a template")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
