# Every entry point of Orderflow. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup build unit validate test test-aws demo local-up local-down local-logs local-deploy \
        logs order rebuild-read-model bench bench-coldstart schemas fmt lint clean package \
        cli send trace dlq redrive replay load cost chaos stats

LOCALSTACK_PORT ?= 4566
STAGE ?= dev
export LOCALSTACK_PORT STAGE
CARGO_FLAGS ?= --locked

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## install LocalStack, DynamoDB Local, the local Lambda executor, SAM CLI, cfn-lint, AWS CLI, checkov into .local/
	@infra/localstack/setup.sh

build: ## build every function for this host
	cargo build $(CARGO_FLAGS) --workspace --bins

unit: ## unit tests only (no LocalStack needed)
	cargo test $(CARGO_FLAGS) --workspace

validate: setup ## sam validate --lint, cfn-lint with our rules (infra/cfn-rules), security scans (cfn-lint I-checks, checkov), fixtures
	@infra/scripts/check_template.sh

test: setup ## everything: template checks, unit tests, then end-to-end tests on a LocalStack this target starts and stops
	@tests/run.sh

test-aws: setup cli ## the e2e suite against your stage on AWS: make test-aws STAGE=<stage> (your credentials; LocalStack-only tests are listed and skipped)
	@test "$(origin STAGE)" != file || { echo "usage: make test-aws STAGE=<stage> (a stage of its own: the suite writes test data)"; exit 2; }
	@tests/run_aws.sh

demo: ## start LocalStack, deploy, send the sample orders and show what happened
	@$(MAKE) --no-print-directory local-deploy
	@infra/scripts/demo.sh

local-up: setup ## start LocalStack in the background (port LOCALSTACK_PORT, default 4566)
	@infra/localstack/start.sh

local-down: ## stop the LocalStack that local-up started
	@infra/localstack/stop.sh

local-logs: ## follow LocalStack's own log
	@tail -n 200 -F $${ORDERFLOW_LOCAL_DIR:-.local}/localstack.log

local-deploy: build local-up ## build and deploy the SAM template to LocalStack (STAGE, default dev)
	@infra/scripts/deploy_local.sh

logs: ## a function's latest log lines: make logs FN=payment [STAGE=dev]
	@test -n "$(FN)" || { echo "usage: make logs FN=<payment|fraud|inventory|shipping|deadline|notification|analytics|audit|orders|outbox|projector|order-query>"; exit 2; }
	@source infra/scripts/env.sh && awsl logs filter-log-events --log-group-name "/aws/lambda/orderflow-$$STAGE-$(FN)" \
	  --query 'events[].message' --output text | tr '\t' '\n' | grep -v '^$$' | tail -n $${LINES:-60}

# ---------------------------------------------------------------- the orderflow CLI
# Thin wrappers: each builds the CLI (functions/cli, a debug build) and runs it against the
# stage's deployment with the local environment (infra/scripts/env.sh: LocalStack's endpoint,
# test credentials). Against AWS, run the binary yourself: `orderflow --stage prod ...`.
ORDERFLOW = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug/orderflow
run_cli = source infra/scripts/env.sh && "$(ORDERFLOW)"

cli: ## build the orderflow CLI (target/debug/orderflow)
	@cargo build --quiet $(CARGO_FLAGS) -p orderflow-cli

send: cli ## send orders: make send FILE=events/samples/order-placed.json, or make send N=5 [RATE=2] [DUP=1] [DECLINE=0.2] [VERSION=1]
	@test -n "$(FILE)$(N)" || { echo "usage: make send FILE=<put-events file> | N=<count> [RATE=] [DUP=] [DECLINE=] [VERSION=]"; exit 2; }
	@$(run_cli) send $(if $(FILE),"$(FILE)",--count $(N) $(if $(RATE),--rate $(RATE)) $(if $(DUP),--duplicates $(DUP)) \
	  $(if $(DECLINE),--decline-share $(DECLINE)) $(if $(VERSION),--schema-version $(VERSION)))

order: cli ## show an order: make order ID=ord-1001 [AS_OF=2026-11-21T10:00:00Z] (read model, or rebuilt as of a time)
	@test -n "$(ID)" || { echo "usage: make order ID=<order id> [AS_OF=<RFC 3339 time>]"; exit 2; }
	@$(run_cli) order "$(ID)" $(if $(AS_OF),--as-of "$(AS_OF)")

trace: cli ## what happened to an order, as a causal tree: make trace ID=ord-1001 [MERMAID=1]
	@test -n "$(ID)" || { echo "usage: make trace ID=<order id | correlation id> [MERMAID=1]"; exit 2; }
	@$(run_cli) trace "$(ID)" $(if $(MERMAID),--mermaid)

dlq: cli ## dead-letter queues: make dlq (depth and reasons), make dlq Q=payment (its messages)
	@$(run_cli) dlq $(if $(Q),show "$(Q)",list)

redrive: cli ## move a DLQ's messages back: make redrive Q=payment [REASON=..] [DRY_RUN=1] [PERMANENT=1]
	@test -n "$(Q)" || { echo "usage: make redrive Q=<queue> [REASON=<FailureReason>] [DRY_RUN=1] [PERMANENT=1]"; exit 2; }
	@$(run_cli) dlq redrive "$(Q)" $(if $(REASON),--reason "$(REASON)") $(if $(DRY_RUN),--dry-run) $(if $(PERMANENT),--include-permanent)

replay: cli ## replay stored events: make replay FROM=<time> TO=<time> [TYPE=OrderPlaced] (onto the bus) or [REBUILD=1] (read model)
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make replay FROM=<RFC 3339> TO=<RFC 3339> [TYPE=<detail-type>] [REBUILD=1]"; exit 2; }
	@$(run_cli) replay --from "$(FROM)" --to "$(TO)" $(if $(TYPE),--type "$(TYPE)") $(if $(REBUILD),--rebuild-read-model,--to-bus)

load: cli ## load test: make load N=20 [RATE=5] [DUP=2] [DECLINE=0.1] [JSON=1]: throughput, latency percentiles, per hop
	@$(run_cli) load --orders $(or $(N),20) $(if $(RATE),--rate $(RATE)) $(if $(DUP),--duplicates $(DUP)) \
	  $(if $(DECLINE),--decline-share $(DECLINE)) $(if $(JSON),--json)

cost: cli ## cost report of a load run: make cost N=20 [RATE=5] [DUP=2] [DECLINE=0.1] [JSON=1]: AWS requests per order, $ per million orders
	@$(run_cli) load --orders $(or $(N),20) $(if $(RATE),--rate $(RATE)) $(if $(DUP),--duplicates $(DUP)) \
	  $(if $(DECLINE),--decline-share $(DECLINE)) $(if $(JSON),--json) --cost

chaos: cli ## a load run while function processes are killed, then the books checked: make chaos [N=300] [DUP=100] [DECLINE=0.1] (LocalStack stage, stock seeded from infra/seed/inventory.json)
	@trap 'kill $$killer 2>/dev/null' EXIT; infra/scripts/kill_functions.sh 3 8 & killer=$$!; \
	  $(run_cli) load --orders $(or $(N),300) --duplicates $(or $(DUP),100) --decline-share $(or $(DECLINE),0.1) --timeout 1200 --cost; \
	  kill $$killer; wait $$killer 2>/dev/null; \
	  $(run_cli) dlq list && ".local/tools-venv/bin/python" infra/scripts/check_ledger.py --stage "$(STAGE)" infra/seed/inventory.json

stats: cli ## the analytics counters as tables
	@$(run_cli) stats

rebuild-read-model: ## re-project the orders read model in place from the event store (views only move forward) [AS_OF=...]
	@source infra/scripts/env.sh && awsl lambda invoke --function-name "orderflow-$$STAGE-projector" \
	  --payload '{"rebuild": {$(if $(AS_OF),"asOf": "$(AS_OF)")}}' /dev/stdout | head -n 1

bench: local-up ## benchmarks: decode and batch overhead, idempotency round trips (numbers printed)
	@source infra/scripts/env.sh && cargo bench $(CARGO_FLAGS) -p eventkit --bench eventkit

# Cold start as Lambda sees it: process start -> the first GET of the Runtime API's next
# invocation, for every function of LAMBDA_FUNCTIONS (release build for this host) beside a
# Python 3.11 + Powertools peer doing the same kind of init, in one run, alternating so that
# noise hits both alike. The harness (tests/coldstart) stands in for the Runtime API on a free
# loopback port; the peer's packages go into a venv of their own under ORDERFLOW_LOCAL_DIR.
# COLDSTART_BASELINE: a directory with other builds of the same binaries (say, copies from
# before a change), measured in the same rounds as a third column.
COLDSTART_PEER_PACKAGES := aws-lambda-powertools==3.37.0 boto3==1.44.5
COLDSTART_RUNS ?= 20

bench-coldstart: ## cold start of every function vs a Python Powertools peer: medians and ratio [COLDSTART_RUNS=20] [COLDSTART_BASELINE=<dir of other builds>]
	@set -euo pipefail; \
	venv="$${ORDERFLOW_LOCAL_DIR:-$(CURDIR)/.local}/coldstart-venv"; \
	if [ "$$(cat "$$venv/packages" 2>/dev/null)" != "$(COLDSTART_PEER_PACKAGES)" ]; then \
	  echo "installing the Python peer ($(COLDSTART_PEER_PACKAGES)) into $$venv"; \
	  rm -rf "$$venv" && python3 -m venv "$$venv"; \
	  "$$venv/bin/pip" install --quiet --disable-pip-version-check $(COLDSTART_PEER_PACKAGES); \
	  echo "$(COLDSTART_PEER_PACKAGES)" > "$$venv/packages"; \
	fi; \
	cargo build --release $(CARGO_FLAGS) --bins -p coldstart \
	  $(foreach f,$(LAMBDA_FUNCTIONS),-p $(lastword $(subst =, ,$(f)))); \
	release="$(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release"; \
	"$$release/coldstart" --template "$(CURDIR)/infra/template.yaml" --bin-dir "$$release" \
	  --python "$$venv/bin/python" --peer-dir "$(CURDIR)/tests/coldstart/peer" --bare "$$release/bare-runtime" \
	  --runs $(COLDSTART_RUNS) --warmup 1 $(if $(COLDSTART_BASELINE),--baseline-dir "$(COLDSTART_BASELINE)") \
	  $(LAMBDA_FUNCTIONS)

schemas: ## write new schema versions to events/schemas/ and lock them in PUBLISHED (never rewrites a published one)
	UPDATE_SCHEMAS=1 cargo test $(CARGO_FLAGS) -p contracts --test schemas

fmt: ## format the code
	cargo fmt --all

lint: setup ## ruff on the Python under infra/ (infra/ruff.toml), rustfmt check, clippy -D warnings (Rust pinned: LINT_RUST)
	@infra/scripts/lint.sh

clean: local-down ## remove build outputs and local state (keeps installed tools)
	rm -rf target .aws-sam infra/.aws-sam .local/localstack .local/tmp

# ---------------------------------------------------------------- AWS packaging
# `sam build` (in infra/) builds every function with `BuildMethod: makefile`: it runs
# `make build-<LogicalId>` with this Makefile (found in CodeUri, the repository root) and
# ARTIFACTS_DIR set, and deploys whatever the target put there ("Building Lambda functions with
# custom runtimes in AWS SAM",
# https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/building-custom-runtimes.html).
# Why not SAM's rust-cargolambda builder: it runs `cargo lambda build --release --bin <one>` once per
# function, so the eleven single-threaded fat-LTO links of [profile.release] (about 50 s each here)
# run one after another. Here the first target builds all eleven in one cargo run, which links them
# side by side on every core; the other ten targets find cargo up to date and only copy their
# binary. Times are in infra/README.md, "Building for AWS".
# infra/samconfig.toml sets build_in_source = true (`sam build --build-in-source`, "sam build"
# command reference,
# https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-cli-command-reference-sam-build.html):
# otherwise SAM first copies the repository, target/ included, to a scratch directory. These
# targets always build in the repository, wherever make is started, so they stay correct either way.
#
# Logical id = binary, for every function in infra/template.yaml (the same pairs as its
# Metadata.BuildProperties.Binary; `make package` checks that they agree).
LAMBDA_FUNCTIONS := PaymentFunction=payment InventoryFunction=inventory ShippingFunction=shipping \
  NotificationFunction=notification AnalyticsFunction=analytics OrdersFunction=orders \
  OutboxFunction=outbox ProjectorFunction=projector OrderQueryFunction=order-query \
  AuditFunction=audit DeadlineFunction=deadline \
  FraudFunction=fraud
REPO_ROOT := $(patsubst %/,%,$(dir $(abspath $(firstword $(MAKEFILE_LIST)))))
# The architecture is the template's one `Architectures:` line (Globals): SAM runs these
# targets with ARTIFACTS_DIR only, so the template is the one place both can read.
LAMBDA_ARCH := $(shell sed -n 's/^ *Architectures: *\[ *\(arm64\|x86_64\) *\].*/\1/p' "$(REPO_ROOT)/infra/template.yaml")
LAMBDA_TRIPLE = $(if $(filter x86_64,$(LAMBDA_ARCH)),x86_64,aarch64)-unknown-linux-gnu
LAMBDA_DIR = $(or $(CARGO_TARGET_DIR),$(REPO_ROOT)/target)/lambda
lambda_binary = $(patsubst $(1)=%,%,$(filter $(1)=%,$(LAMBDA_FUNCTIONS)))

build-%:
	@test -n "$(call lambda_binary,$*)" || { echo "no binary for $*: add $*=<binary> to LAMBDA_FUNCTIONS in $(REPO_ROOT)/Makefile" >&2; exit 2; }
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)" >&2; exit 2; }
	@case "$(LAMBDA_ARCH)" in arm64|x86_64) ;; *) echo "infra/template.yaml needs exactly one 'Architectures: [arm64]' or '[x86_64]' line (Globals), found '$(LAMBDA_ARCH)'" >&2; exit 2 ;; esac
	@# cargo reports progress on stderr, which SAM only shows when the build fails.
	cd "$(REPO_ROOT)" && cargo lambda build --release --$(subst _,-,$(LAMBDA_ARCH)) $(CARGO_FLAGS) \
	  $(foreach f,$(LAMBDA_FUNCTIONS),--bin $(lastword $(subst =, ,$(f)))) 2>&1
	cp "$(LAMBDA_DIR)/$(call lambda_binary,$*)/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"

PACKAGE_DIR := infra/.aws-sam/zips

package: setup ## sam build for AWS (the template's architecture; one release build of all functions), zip each one and print the sizes
	@set -euo pipefail; \
	export PATH="$${ORDERFLOW_LOCAL_DIR:-$(CURDIR)/.local}/tools-venv/bin:$$PATH" SAM_CLI_TELEMETRY=0; \
	if ! diff <(python -c 'import sys; from cfnlint.decode import cfn_yaml; resources = cfn_yaml.load(sys.argv[1])["Resources"]; print("\n".join(name + "=" + str(r.get("Metadata", {}).get("BuildProperties", {}).get("Binary")) for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"))' infra/template.yaml | LC_ALL=C sort) \
	           <(printf '%s\n' $(LAMBDA_FUNCTIONS) | LC_ALL=C sort); then \
	  echo "infra/template.yaml (<) and LAMBDA_FUNCTIONS in the Makefile (>) disagree on the functions' binaries" >&2; exit 1; \
	fi; \
	rustup target list --installed | grep -qx "$(LAMBDA_TRIPLE)" || rustup target add "$(LAMBDA_TRIPLE)"; \
	start=$$(date +%s); \
	(cd infra && sam build); \
	echo "sam build: $$(( $$(date +%s) - start )) s"; \
	rm -rf "$(PACKAGE_DIR)" && mkdir -p "$(PACKAGE_DIR)"; \
	printf '%-22s %-13s %12s %12s\n' function binary bootstrap zip; \
	for pair in $(LAMBDA_FUNCTIONS); do \
	  function=$${pair%%=*}; binary=$${pair#*=}; \
	  (cd "infra/.aws-sam/build/$$function" && zip -q -X "$(CURDIR)/$(PACKAGE_DIR)/$$function.zip" bootstrap); \
	  printf '%-22s %-13s %12s %12s\n' "$$function" "$$binary" \
	    "$$(numfmt --to=iec-i --suffix=B --format=%.1f --round=nearest $$(stat -c %s "infra/.aws-sam/build/$$function/bootstrap"))" \
	    "$$(numfmt --to=iec-i --suffix=B --format=%.1f --round=nearest $$(stat -c %s "$(PACKAGE_DIR)/$$function.zip"))"; \
	done; \
	echo "zips in $(PACKAGE_DIR)/; deploy with: cd infra && sam deploy"
