# Every entry point of Orderflow. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup build unit validate test demo local-up local-down local-logs local-deploy \
        logs order rebuild-read-model bench schemas fmt lint clean

LOCALSTACK_PORT ?= 4566
STAGE ?= dev
export LOCALSTACK_PORT STAGE
CARGO_FLAGS ?= --locked

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## install LocalStack, DynamoDB Local, the local Lambda executor, SAM CLI, cfn-lint, AWS CLI into .local/
	@infra/localstack/setup.sh

build: ## build every function for this host
	cargo build $(CARGO_FLAGS) --workspace --bins

unit: ## unit tests only (no LocalStack needed)
	cargo test $(CARGO_FLAGS) --workspace

validate: setup ## sam validate --lint, cfn-lint with our rules (infra/cfn-rules) on infra/template.yaml, rule fixtures
	@infra/scripts/check_template.sh

test: setup ## everything: template checks, unit tests, then end-to-end tests on a LocalStack this target starts and stops
	@tests/run.sh

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
	@test -n "$(FN)" || { echo "usage: make logs FN=<payment|inventory|shipping|notification|analytics|orders|outbox|projector|order-query>"; exit 2; }
	@source infra/scripts/env.sh && awsl logs filter-log-events --log-group-name "/aws/lambda/orderflow-$$STAGE-$(FN)" \
	  --query 'events[].message' --output text | tr '\t' '\n' | grep -v '^$$' | tail -n $${LINES:-60}

order: ## show an order: make order ID=ord-1001 [AS_OF=2026-11-21T10:00:00Z] (read model, or rebuilt as of a time)
	@test -n "$(ID)" || { echo "usage: make order ID=<order id> [AS_OF=<RFC 3339 time>]"; exit 2; }
	@source infra/scripts/env.sh && "$$TOOLS/python" infra/scripts/order.py "$(ID)" --as-of "$(AS_OF)"

rebuild-read-model: ## drop the orders read model and replay it from the event store [AS_OF=...]
	@source infra/scripts/env.sh && awsl lambda invoke --function-name "orderflow-$$STAGE-projector" \
	  --payload '{"rebuild": {$(if $(AS_OF),"asOf": "$(AS_OF)")}}' /dev/stdout | head -n 1

bench: local-up ## benchmarks: decode and batch overhead, idempotency round trips (numbers printed)
	@source infra/scripts/env.sh && cargo bench $(CARGO_FLAGS) -p eventkit --bench eventkit

schemas: ## regenerate events/schemas/*.json from the contract types
	UPDATE_SCHEMAS=1 cargo test $(CARGO_FLAGS) -p contracts --test schemas

fmt: ## format the code
	cargo fmt --all

lint: ## rustfmt check and clippy
	cargo fmt --all -- --check
	cargo clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

clean: local-down ## remove build outputs and local state (keeps installed tools)
	rm -rf target .aws-sam .local/localstack .local/tmp
