#!/usr/bin/env bash
# `make lint` and the first step of `make test`: ruff on the Python under infra/
# (infra/ruff.toml), rustfmt --check and clippy -D warnings on the workspace.
# rustfmt and clippy are pinned to one Rust release (LINT_RUST, infra/scripts/env.sh): their
# lints change from release to release, and `make test` must not change without a commit.
# They run with that toolchain by name when rustup has it, else with the default toolchain if
# it is that release; otherwise this fails and says how to get it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

"$TOOLS/ruff" check infra
lint_cargo=(cargo)
if rustup toolchain list 2>/dev/null | grep -q "^$LINT_RUST-"; then
  lint_cargo=(cargo "+$LINT_RUST")
elif [ "$(rustc --version | awk '{print $2}')" != "$LINT_RUST" ]; then
  echo "lint: rustfmt and clippy are pinned to Rust $LINT_RUST, and this is $(rustc --version)." >&2
  echo "      rustup toolchain install $LINT_RUST --component rustfmt clippy (or bump LINT_RUST in infra/scripts/env.sh)" >&2
  exit 1
fi
"${lint_cargo[@]}" fmt --all -- --check
"${lint_cargo[@]}" clippy --locked --workspace --all-targets -- -D warnings
