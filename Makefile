# The two commands a newcomer needs: `make up` (run the platform) and `make test` (run every test).
SHELL := /usr/bin/env bash

.PHONY: up down demo test lint validate bench bench-smoke build release help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

up: ## Build and run the whole platform locally (NATS, the three services); Ctrl-C stops it
	@scripts/up.sh

down: ## Stop a platform started with `make up` in the background
	@scripts/down.sh

demo: ## Walk the main story against the running platform
	@scripts/demo.sh

test: ## Every test: lints, unit, integration, end-to-end, deployment validation
	@scripts/test.sh

lint: ## cargo fmt --check and clippy -D warnings
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

validate: ## Validate the deployment artifacts (Helm, Kubernetes/CRD schemas, Kong, Istio, Argo CD, rules)
	@scripts/validate.sh

bench: ## Load-test the release build (SQLite and PostgreSQL) and print the figures (BENCH_SMOKE=1: quick)
	@bench/run.sh

bench-smoke: ## The benchmark in smoke mode: a second or two per scenario (CI)
	@BENCH_SMOKE=1 bench/run.sh

build: ## Debug build of the services
	cargo build --workspace --bins

release: ## Optimised, stripped binaries (the profile the images use)
	cargo build --workspace --bins --profile dist
