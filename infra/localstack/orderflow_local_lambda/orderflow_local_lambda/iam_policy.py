"""IAM identity-based policy evaluation: does a role's policy set allow `action` on `resource`?

Why hand-written: no maintained PyPI library evaluates IAM policies *with conditions*.
Looked at: moto's `moto.iam.access_control` (already in LocalStack's venv; its own header
says Resource and Condition support is a TODO, and it has no NotResource), policyuniverse
(parses and expands actions, no evaluation), parliament / cloudsplaining / policy-sentry
(linting, analysis, generation), principalmapper (has a local simulator with conditions, but
its last release is from 2022 and it works on its own graph model). What we need is small:
the rules below, each from AWS's IAM User Guide.

Rules (IAM User Guide):
- "Policy evaluation logic" and "The difference between explicit and implicit denies"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
  .../reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html): an explicit
  Deny in any statement wins; else one Allow is needed; else the request is implicitly denied.
- "IAM JSON policy elements: Action / NotAction / Resource / NotResource": action names are
  case-insensitive and take `*`/`?` wildcards; resource ARNs are case-sensitive, wildcards
  match within each colon-separated ARN segment.
- "IAM JSON policy elements: Condition operators"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):
  all operators of a statement and all keys of an operator must match (AND), any of a key's
  values may match (OR); a key missing from the request makes the condition false, except for
  the negated operators (true), `...IfExists` (true) and `Null`.
- "Multivalued context keys" (.../reference_policies_condition-single-vs-multi-valued-context-keys.html):
  `ForAnyValue:` needs one request value to match; `ForAllValues:` needs every request value to
  match and is true when the key is missing or empty.
Unsupported operators raise `UnsupportedPolicy`: a statement we cannot evaluate must never
silently allow (or silently fail to deny).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

ContextValue = str | Sequence[str]


class UnsupportedPolicy(ValueError):
    """A policy uses an element or operator this evaluator does not implement."""


@dataclass(frozen=True)
class Statement:
    policy: str  # where it comes from: inline policy name or managed policy ARN
    index: int  # position in the policy, to name statements without a Sid
    sid: str
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Mapping[str, object]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.policy}#{self.sid or self.index}"


@dataclass
class Decision:
    allowed: bool
    allowing: list[Statement]
    denying: list[Statement]

    @property
    def explicit_deny(self) -> bool:
        return bool(self.denying)


def _as_tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def parse_policy(name: str, document: str | Mapping) -> list[Statement]:
    """Statements of one policy document (JSON text, URL-encoded text is decoded by the caller)."""
    doc = json.loads(document) if isinstance(document, str) else document
    raw = doc.get("Statement", [])
    if isinstance(raw, Mapping):
        raw = [raw]
    statements = []
    for i, st in enumerate(raw):
        if "Principal" in st or "NotPrincipal" in st:
            raise UnsupportedPolicy(f"{name}: Principal in an identity-based policy")
        effect = st.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"{name} statement {i}: Effect {effect!r}")
        statements.append(
            Statement(
                policy=name,
                index=i,
                sid=str(st.get("Sid") or ""),
                effect=effect,
                actions=_as_tuple(st.get("Action")),
                not_actions=_as_tuple(st.get("NotAction")),
                resources=_as_tuple(st.get("Resource")),
                not_resources=_as_tuple(st.get("NotResource")),
                condition=st.get("Condition") or {},
            )
        )
    return statements


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return bool(_wildcard(pattern, ignore_case).match(value))


def action_matches(pattern: str, action: str) -> bool:
    return wildcard_match(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str) -> bool:
    """ARN wildcard match, segment by segment (arn:partition:service:region:account:resource)."""
    if pattern == "*":
        return True
    p_parts = pattern.split(":", 5)
    a_parts = arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return wildcard_match(pattern, arn)
    return all(wildcard_match(p, a) for p, a in zip(p_parts, a_parts, strict=True))


# -------------------------------------------------------------------------- conditions
_STRING_OPS = {
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (lambda p, v: wildcard_match(p, v), False),
    "StringNotLike": (lambda p, v: wildcard_match(p, v), True),
    "ArnEquals": (arn_matches, False),
    "ArnLike": (arn_matches, False),
    "ArnNotEquals": (arn_matches, True),
    "ArnNotLike": (arn_matches, True),
    "Bool": (lambda p, v: p.lower() == v.lower(), False),
}


def _values(value: ContextValue | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _condition_holds(operator: str, key: str, policy_values, context: Mapping[str, ContextValue]) -> bool:
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise UnsupportedPolicy(f"condition set operator {qualifier!r}")
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    wanted = _values(policy_values) or []
    present = _values(context.get(key.lower()))

    if operator == "Null":
        if qualifier or if_exists:
            raise UnsupportedPolicy(f"{qualifier or ''}Null{'IfExists' if if_exists else ''}")
        must_be_absent = {w.lower() for w in wanted} == {"true"}
        return (present is None) == must_be_absent

    if operator not in _STRING_OPS:
        raise UnsupportedPolicy(f"condition operator {operator!r} (supported: {', '.join(_STRING_OPS)}, Null)")
    match, negated = _STRING_OPS[operator]

    def hit(value: str) -> bool:
        return any(match(p, value) for p in wanted)

    if qualifier == "ForAllValues":
        if not present:
            return True
        return all((not hit(v)) if negated else hit(v) for v in present)
    if qualifier == "ForAnyValue":
        if not present:
            return False
        return any((not hit(v)) if negated else hit(v) for v in present)
    if present is None:
        return bool(if_exists or negated)
    if negated:
        return not any(hit(v) for v in present)
    return any(hit(v) for v in present)


def conditions_hold(condition: Mapping[str, Mapping[str, object]], context: Mapping[str, ContextValue]) -> bool:
    return all(
        _condition_holds(operator, key, values, context)
        for operator, keys in condition.items()
        for key, values in keys.items()
    )


def statement_applies(st: Statement, action: str, resource: str, context: Mapping[str, ContextValue]) -> bool:
    if st.actions:
        if not any(action_matches(p, action) for p in st.actions):
            return False
    elif st.not_actions:
        if any(action_matches(p, action) for p in st.not_actions):
            return False
    else:
        return False
    if st.resources:
        if not any(arn_matches(p, resource) for p in st.resources):
            return False
    elif st.not_resources:
        if any(arn_matches(p, resource) for p in st.not_resources):
            return False
    else:
        return False
    return conditions_hold(st.condition, context)


def evaluate(
    statements: Iterable[Statement],
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
) -> Decision:
    """`context` keys are condition keys (any case); values a string or a list of strings."""
    ctx = {k.lower(): v for k, v in (context or {}).items()}
    allowing, denying = [], []
    for st in statements:
        if statement_applies(st, action, resource, ctx):
            (allowing if st.effect == "Allow" else denying).append(st)
    return Decision(allowed=bool(allowing) and not denying, allowing=allowing, denying=denying)
