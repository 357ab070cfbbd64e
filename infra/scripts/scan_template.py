"""Security scans of infra/template.yaml: cfn-lint's informational checks and checkov.

    python infra/scripts/scan_template.py              # the template; skips from infra/scan-skips.yaml
    python infra/scripts/scan_template.py --fixtures   # infra/scan-fixtures/: the scans must flag them
    python infra/scripts/scan_template.py --template T --skips S

Run it with the tools venv's python (cfn-lint, aws-sam-translator and PyYAML come from there;
infra/scripts/check_template.sh does). checkov has a venv of its own (infra/localstack/setup.sh):
`.local/checkov-venv/bin/checkov`, or --checkov PATH.

- cfn-lint: `--include-checks I` on the template and on its SAM translation, and only the
  informational findings count here (errors and warnings already fail check_template.sh's
  cfn-lint part). Findings on the translation name the template's logical ids, like checkov's.
- checkov: the template as written (checkov reads `AWS::Serverless::Function` itself, with
  `Globals` merged) and its SAM translation, the plain CloudFormation SAM deploys: the IAM roles,
  functions and event source mappings SAM generates exist only there, so checkov's IAM checks
  see the functions' `Policies` only there. Findings on both name the same logical ids.

A finding fails the run unless the skip list names its check for its resource (logical id).
Each skip entry has a check, resource names and a reason (`why`); a skip entry that matches
no finding fails the run too, so the list cannot outlive its reasons. One summary line per
tool: `cfn-lint informational: N findings, M failed, K skipped`, `checkov: N passed, M failed,
K skipped`.

--fixtures scans each `infra/scan-fixtures/*.yaml` without skips: a fixture must be reported
for every check its `Metadata.OrderflowScanExpects` names (per tool: `CHECK` or `CHECK Resource`),
and `good*.yaml` for none at all. Prints `N passed, M failed` (tests/run.sh counts it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = ROOT / "infra" / "template.yaml"
DEFAULT_SKIPS = ROOT / "infra" / "scan-skips.yaml"
FIXTURES_DIR = ROOT / "infra" / "scan-fixtures"
LOCAL_DIR = Path(os.environ.get("ORDERFLOW_LOCAL_DIR") or ROOT / ".local")
DEFAULT_CHECKOV = LOCAL_DIR / "checkov-venv" / "bin" / "checkov"
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Stands in for the local CodeUri (`../`) that `sam build` would upload: the translator only
# accepts S3 locations, and nothing checkov checks depends on the code's place.
PLACEHOLDER_CODE_URI = "s3://orderflow-scan-placeholder/code.zip"
TOOLS = ("cfn-lint", "checkov")


class ScanError(Exception):
    """A scanner could not run, or its skip list is malformed: not a finding."""


@dataclass(frozen=True)
class Finding:
    tool: str
    check: str
    resource: str  # logical id, or the template path for findings outside Resources
    template: str  # the scanned template (for its SAM translation too), relative to the repository
    where: str  # file:line
    message: str


@dataclass
class Report:
    findings: list[Finding]
    passed: int | None  # checkov counts passes; cfn-lint does not
    skipped_in_template: int = 0  # checkov's own suppressions (checkov:skip comments or Metadata)


# ------------------------------------------------------------------------------- running the tools
def cfn_lint_command(templates: list[Path]) -> list[str]:
    # The tools venv's own cfn-lint, next to this interpreter; else whatever is on PATH.
    beside = Path(sys.executable).parent / "cfn-lint"
    # Templates first: --include-checks takes every following argument as a check id (like -a).
    return [str(beside) if beside.exists() else "cfn-lint", *map(str, templates), "--format", "json",
            "--include-checks", "I"]


def cfn_lint_findings(stdout: str, stderr: str, returncode: int,
                      sources: dict[str, tuple[str, str]] | None = None) -> Report:
    """sources: as for checkov_findings, so that findings on a SAM translation name their template."""
    # Exit code bit mask: 1 = cfn-lint could not run; 2/4/8 = errors/warnings/informational found.
    if returncode & 1:
        raise ScanError(f"cfn-lint failed (exit {returncode}):\n{stderr}{stdout}")
    findings = []
    for match in json.loads(stdout or "[]"):
        # E0xxx: the template could not be read or parsed, so nothing else was checked.
        if match["Rule"]["Id"].startswith("E0") or not match.get("Filename"):
            raise ScanError(f"cfn-lint could not check {match.get('Filename')}: {match['Message']}")
        if match["Level"] != "Informational":
            continue
        path = match["Location"].get("Path") or []
        resource = str(path[1]) if len(path) > 1 and path[0] == "Resources" else "/".join(map(str, path))
        filename = str(Path(match["Filename"]).resolve())
        template, label = (sources or {}).get(filename, (display(Path(match["Filename"])),) * 2)
        line = match["Location"]["Start"]["LineNumber"]
        findings.append(Finding("cfn-lint", match["Rule"]["Id"], resource or "(template)", template,
                                f"{label}:{line}", match["Message"]))
    return Report(findings, None)


def checkov_findings(stdout: str, stderr: str, returncode: int, sources: dict[str, tuple[str, str]]) -> Report:
    """sources: each scanned file (resolved) -> (its template, how to name it in messages)."""
    # checkov exits 1 when a check failed; anything else non-zero, or no JSON, means it did not run.
    try:
        reports = json.loads(stdout)
    except json.JSONDecodeError:
        raise ScanError(f"checkov failed (exit {returncode}):\n{stderr}{stdout}") from None
    if returncode not in (0, 1):
        raise ScanError(f"checkov failed (exit {returncode}):\n{stderr}")
    findings, passed, skipped_in_template = [], 0, 0
    for report in reports if isinstance(reports, list) else [reports]:
        results = report.get("results") or {}
        if results.get("parsing_errors") or report.get("summary", {}).get("parsing_errors"):
            raise ScanError(f"checkov could not parse: {results.get('parsing_errors')}")
        passed += report.get("summary", {}).get("passed", 0)
        skipped_in_template += report.get("summary", {}).get("skipped", 0)
        for check in results.get("failed_checks", []):
            resource = check["resource"].split(".", 1)[-1]  # "AWS::SQS::Queue.PaymentQueue"
            path = str(Path(check["file_abs_path"]).resolve())
            template, label = sources.get(path, (check["file_abs_path"], check["file_abs_path"]))
            findings.append(Finding("checkov", check["check_id"], resource, template,
                                    f"{label}:{check['file_line_range'][0]}", check["check_name"]))
    return Report(findings, passed, skipped_in_template)


def sam_translation(template: Path, out_dir: Path) -> Path | None:
    """The template after the SAM transform (as `sam deploy` would send it), or None without SAM."""
    from cfnlint.decode import cfn_yaml
    from samtranslator.translator.transform import transform

    document = json.loads(json.dumps(cfn_yaml.load(str(template))))  # plain dicts and lists
    transforms = document.get("Transform", [])
    if SAM_TRANSFORM not in (transforms if isinstance(transforms, list) else [transforms]):
        return None
    for resource in document.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        code_uri = properties.get("CodeUri")
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code_uri, str) \
                and not code_uri.startswith("s3://"):
            properties["CodeUri"] = PLACEHOLDER_CODE_URI

    class NoManagedPolicyNames:
        # Only called for policies named without an ARN (`Policies: [AmazonSQSFullAccess]`), to look
        # their ARNs up in IAM; Orderflow writes statements, and a scan makes no AWS calls.
        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the translator derives the partition
    translated = transform(document, {}, NoManagedPolicyNames())
    out = out_dir / f"{template.stem}.sam-translated.json"
    out.write_text(json.dumps(translated, indent=1))
    return out


def scan(templates: list[Path], checkov: Path) -> dict[str, Report]:
    """Both tools on the templates (checkov also on their SAM translations), side by side."""
    if not checkov.exists():
        raise ScanError(f"no checkov at {checkov}: run `make setup` (infra/localstack/setup.sh)")
    with tempfile.TemporaryDirectory(prefix="orderflow-scan-") as scratch:
        sources = {str(t.resolve()): (display(t), display(t)) for t in templates}
        checkov_inputs = list(templates)
        for template in templates:
            try:
                translated = sam_translation(template, Path(scratch))
            except Exception as error:  # any translator error (it raises several kinds): say so
                raise ScanError(f"SAM transform of {display(template)} failed: {error}") from error
            if translated is not None:
                checkov_inputs.append(translated)
                sources[str(translated.resolve())] = (display(template), f"{display(template)} (SAM translation)")
        env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
        # --skip-download: no guideline lookups or policy downloads from the Prisma Cloud API.
        checkov_run = subprocess.Popen(
            [str(checkov), "--framework", "cloudformation", "--skip-download", "--output", "json",
             *(arg for path in checkov_inputs for arg in ("--file", str(path)))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        # The informational checks on the SAM translation too: what SAM generates (roles, their
        # policies, event source mappings) and what it copies from the functions' Policies are
        # only there, so a hard-coded partition in a policy (I3042) shows only there.
        lint = subprocess.run(cfn_lint_command(checkov_inputs), capture_output=True, text=True, cwd=ROOT)
        checkov_out, checkov_err = checkov_run.communicate()
        return {
            "cfn-lint": cfn_lint_findings(lint.stdout, lint.stderr, lint.returncode, sources),
            "checkov": checkov_findings(checkov_out, checkov_err, checkov_run.returncode, sources),
        }


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------- skip list
def load_skips(path: Path) -> dict[tuple[str, str, str], str]:
    """(tool, check, resource) -> why. Every entry names its resources and says why; no wildcards."""
    document = yaml.safe_load(path.read_text()) or {}
    unknown = set(document) - set(TOOLS)
    if unknown:
        raise ScanError(f"{display(path)}: unknown tools {sorted(unknown)} (expected {', '.join(TOOLS)})")
    skips: dict[tuple[str, str, str], str] = {}
    for tool in TOOLS:
        for number, entry in enumerate(document.get(tool) or [], 1):
            where = f"{display(path)}: {tool} entry {number}"
            if not isinstance(entry, dict) or set(entry) != {"check", "resources", "why"}:
                raise ScanError(f"{where}: needs exactly check, resources and why")
            check, resources, why = entry["check"], entry["resources"], str(entry["why"] or "").strip()
            if not why:
                raise ScanError(f"{where} ({check}): say why it does not apply")
            if not isinstance(resources, list) or not resources:
                raise ScanError(f"{where} ({check}): list the resources (logical ids) it is skipped for")
            for resource in resources:
                if not isinstance(resource, str) or "*" in resource:
                    raise ScanError(f"{where} ({check}): {resource!r} is not a logical id")
                if (tool, check, resource) in skips:
                    raise ScanError(f"{where}: {check} for {resource} is listed twice")
                skips[(tool, check, resource)] = why
    return skips


def judge(reports: dict[str, Report], skips: dict[tuple[str, str, str], str]) -> bool:
    """Prints every unskipped finding, every stale skip and one summary line per tool."""
    ok = True
    used: set[tuple[str, str, str]] = set()
    for tool in TOOLS:
        report = reports[tool]
        failed = [f for f in report.findings if (f.tool, f.check, f.resource) not in skips]
        used |= {(f.tool, f.check, f.resource) for f in report.findings} & skips.keys()
        for finding in sorted(failed, key=lambda f: (f.check, f.template, int(f.where.rpartition(":")[2]))):
            print(f"FAIL {tool} {finding.check} {finding.resource} ({finding.where}): {finding.message}")
        # Suppressions in the template itself count as skipped too, so the numbers add up.
        skipped = len(report.findings) - len(failed) + report.skipped_in_template
        if report.passed is None:
            print(f"{tool} informational: {len(report.findings)} findings, {len(failed)} failed, {skipped} skipped")
        else:
            print(f"{tool}: {report.passed} passed, {len(failed)} failed, {skipped} skipped")
        ok &= not failed
    for tool, check, resource in sorted(skips.keys() - used):
        print(f"FAIL stale skip: {tool} {check} {resource} matches no finding; remove it from the skip list")
        ok = False
    return ok


# ---------------------------------------------------------------------------------------- fixtures
def expected_findings(fixture: Path) -> set[tuple[str, str, str | None]]:
    metadata = (yaml.safe_load(fixture.read_text()) or {}).get("Metadata") or {}
    expects = metadata.get("OrderflowScanExpects") or {}
    wanted = set()
    for tool, items in expects.items():
        for item in items or []:
            check, _, resource = str(item).partition(" ")
            wanted.add((tool, check, resource.strip() or None))
    return wanted


def check_fixtures(checkov: Path) -> bool:
    fixtures = sorted(FIXTURES_DIR.glob("*.yaml"))
    if not fixtures:
        print(f"FAIL no fixtures in {display(FIXTURES_DIR)}")
        return False
    reports = scan(fixtures, checkov)
    passed = failed = 0
    for fixture in fixtures:
        name = display(fixture)
        found = [f for r in reports.values() for f in r.findings if f.template == name]
        wanted = expected_findings(fixture)
        problems = []
        if fixture.name.startswith("good"):
            problems += [f"unexpected {f.tool} {f.check} {f.resource} ({f.where})" for f in found]
        elif not wanted:
            problems.append("names no OrderflowScanExpects (or call it good*.yaml)")
        for tool, check, resource in sorted(wanted, key=str):
            if not any(f.tool == tool and f.check == check and resource in (None, f.resource) for f in found):
                problems.append(f"{tool} did not report {check}" + (f" on {resource}" if resource else ""))
        if problems:
            failed += 1
            print(f"FAIL {fixture.name}: " + "; ".join(problems))
        else:
            passed += 1
            counts = Counter(f.tool for f in found)
            print(f"ok   {fixture.name}: " + (", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "clean"))
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--skips", type=Path, default=DEFAULT_SKIPS)
    parser.add_argument("--checkov", type=Path, default=DEFAULT_CHECKOV)
    parser.add_argument("--fixtures", action="store_true", help="check the scans against infra/scan-fixtures/")
    args = parser.parse_args()
    try:
        if args.fixtures:
            return 0 if check_fixtures(args.checkov) else 1
        skips = load_skips(args.skips)
        return 0 if judge(scan([args.template], args.checkov), skips) else 1
    except ScanError as error:
        print(f"FAIL {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
