# Every entry point of Orderflow. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup build unit validate test demo local-up local-down local-logs local-deploy \
        bench schemas fmt lint clean

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

validate: setup ## sam validate --lint and cfn-lint on infra/template.yaml
	@source infra/scripts/env.sh && cd infra && sam validate --lint --template-file template.yaml && cfn-lint template.yaml && echo "template: sam validate --lint and cfn-lint pass"

test: setup ## everything: template checks, unit tests, then end-to-end tests on a LocalStack this target starts and stops
	@tests/run.sh

demo: ## start LocalStack, deploy, send the sample orders and show what happened
	@$(MAKE) --no-print-directory local-deploy
	@infra/scripts/demo.sh

local-up: setup ## start LocalStack in the background (port LOCALSTACK_PORT, default 4566)
	@infra/localstack/start.sh

local-down: ## stop the LocalStack that local-up started
	@infra/localstack/stop.sh

local-logs: ## follow LocalStack's log (function logs included)
	@tail -n 200 -F $${ORDERFLOW_LOCAL_DIR:-.local}/localstack.log

local-deploy: build local-up ## build and deploy the SAM template to LocalStack (STAGE, default dev)
	@infra/scripts/deploy_local.sh

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
