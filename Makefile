# f2pipe: the operator's and developer's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV ?= $(ROOT)/.venv
PY := $(VENV)/bin/python
export F2_STATE_DIR ?= $(ROOT)/.state
export F2_TOOLS_DIR ?= $(ROOT)/.tools
RT := $(PY) -m infra.runtime
PYTEST_ARGS ?=

.PHONY: help setup up down status health logs env build test test-unit test-integration \
        check lint fmt typecheck certs clean run

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

setup: ## Install everything needed (Debian packages, venv, Kafka jars, npm, Go tools); idempotent
	@bash scripts/setup.sh

$(PY):
	@bash scripts/setup.sh

run: setup ## Run the pipeline locally end to end (starts the stack; simulator once available)
	@$(RT) up
	@$(RT) status

up: setup ## Start the local stack (Mosquitto, Kafka, PostgreSQL, gateway + functions, bridge, connector)
	@$(RT) up

down: ## Stop the local stack; leaves no process behind
	@$(RT) down

status: ## One line per part; exits 0 only when every part answers its health check
	@$(RT) status

health: status ## Alias of status (key figures per part)

logs: ## Tail the logs of every part (Ctrl-C to stop)
	@$(RT) logs

logs-%: ## Tail the log of one part, e.g. make logs-gateway
	@$(RT) logs $*

env: ## Print shell export lines for every endpoint and credential (use: eval "$$(make -s env)")
	@$(RT) env

build: $(PY) ## Write build/<fn>/ for every function as `faas-cli build --shrinkwrap` does
	@$(RT) build

certs: $(PY) ## Create the internal CA, broker certificate, service credentials and empty CRL
	@$(PY) -m certs init --dir $(ROOT)/certs

test: setup ## Run all tests (unit, integration, end-to-end) against real services
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: $(PY) ## Run the unit tests only
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

lint: $(PY) ## ruff (with bandit rules) over the code
	@$(VENV)/bin/ruff check .

fmt: $(PY) ## Format the code with ruff
	@$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

typecheck: $(PY) ## mypy --strict over the product code
	@$(VENV)/bin/mypy functions bridge infra certs

check: lint typecheck test ## Lint, types and tests

clean: down ## Stop the stack and delete its state, build folders and caches
	@rm -rf $(F2_STATE_DIR) build .pytest_cache .mypy_cache .ruff_cache
