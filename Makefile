# f2pipe: the operator's and developer's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV ?= $(ROOT)/.venv
PY := $(VENV)/bin/python
export F2_STATE_DIR ?= $(ROOT)/.state
export F2_TOOLS_DIR ?= $(ROOT)/.tools
RT := $(PY) -m infra.local
PYTEST_ARGS ?=

.PHONY: help setup setup-runtime up down status health logs env build images test test-unit check lint fmt \
        typecheck certs clean run db-params db-timescale kafka-topics kafka-groups kafka-raw \
        kafka-decoded kafka-dlq mqtt-monitor helm deploy-local k8s-generate keda prometheus-targets \
        autoscale-demo command command-show command-list \
        redrive reprocess

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

setup: ## Install everything needed (Debian packages, venv, Kafka jars, npm, Go tools); idempotent
	@bash infra/tools/setup/setup.sh

setup-runtime: ## Install what the local stack needs (Debian packages, venv, Kafka jars); idempotent
	@bash infra/tools/setup/setup.sh --runtime

$(PY):
	@bash infra/tools/setup/setup.sh --runtime

RUN_ARGS ?=
run: setup-runtime ## Run the pipeline end to end: stack + simulated fleet + live view (RUN_ARGS="--duration 0")
	@$(PY) -m infra.tools.demo $(RUN_ARGS)

up: setup-runtime ## Start the local stack (Mosquitto, Kafka, PostgreSQL, gateway + functions, bridge, connector, autoscaler, Prometheus)
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

IMAGES_ARGS ?=
images: setup-runtime ## Build the function images as faas-cli does (IMAGES_ARGS=--push: to their registry)
	@F2_RUNTIME=containers bash infra/tools/setup/setup.sh --runtime >/dev/null
	@$(PY) -m infra.local.images $(IMAGES_ARGS)

certs: $(PY) ## Create the internal CA, broker certificate, service credentials and empty CRL
	@$(PY) -m certs init --dir $(ROOT)/certs

test: setup ## Run all tests (unit, integration, end-to-end) against real services
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: $(PY) ## Run the unit tests only
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

lint: $(PY) ## ruff (with bandit rules) and ruff's format check over the code
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

fmt: $(PY) ## Format the code with ruff
	@$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

typecheck: $(PY) ## mypy --strict over the product code
	@$(VENV)/bin/mypy functions bridge infra certs

check: lint typecheck test ## Format check, lint, types and tests

ENVSH = eval "$$($(RT) env)" &&
KAFKA_TOOL = $(PY) -m infra.local.launch.kafka run

db-params: ## psql shell on the device-management database (Device, templates, device_parameters)
	@$(ENVSH) psql "$$DEVICES_DSN"

db-timescale: ## psql shell on the timeseries database (iot_measurements)
	@$(ENVSH) psql "$$TIMESERIES_DSN"

kafka-topics: ## Describe the Kafka topics (partitions, leaders)
	@$(ENVSH) $(KAFKA_TOOL) topics --bootstrap-server "$$KAFKA_BOOTSTRAP" --describe

kafka-groups: ## Consumer groups with their lag per partition
	@$(ENVSH) $(KAFKA_TOOL) consumer-groups --bootstrap-server "$$KAFKA_BOOTSTRAP" --describe --all-groups

kafka-raw: ## Tail the raw_iot_data topic (key and value)
	@$(ENVSH) $(KAFKA_TOOL) console-consumer --bootstrap-server "$$KAFKA_BOOTSTRAP" --topic raw_iot_data --property print.key=true

kafka-decoded: ## Tail the decoded_iot_data topic
	@$(ENVSH) $(KAFKA_TOOL) console-consumer --bootstrap-server "$$KAFKA_BOOTSTRAP" --topic decoded_iot_data --property print.key=true

kafka-dlq: ## Tail the iot_dead_letter topic (from the beginning)
	@$(ENVSH) $(KAFKA_TOOL) console-consumer --bootstrap-server "$$KAFKA_BOOTSTRAP" --topic iot_dead_letter --from-beginning --property print.key=true

mqtt-monitor: ## Subscribe to cmnd/# on the internal listener and print every message (TOPIC='#' for all)
	@$(ENVSH) $(PY) -m infra.tools.mqtt_monitor '$(or $(TOPIC),cmnd/#)'

CONNECTOR ?= J1
PARAMS ?= {}
WAIT ?= 5
command: $(PY) ## Send a downlink command: make command DEVICE=f2-… CONNECTOR=J1 COMPONENT=strike-1 ACTION=unlock PARAMS='{"duration_s":5}'
	@test -n "$(DEVICE)" -a -n "$(COMPONENT)" -a -n "$(ACTION)" || \
	  { echo 'usage: make command DEVICE=f2-<mac> CONNECTOR=J1 COMPONENT=strike-1 ACTION=unlock [PARAMS=...] [WAIT=5]' >&2; exit 2; }
	@$(ENVSH) $(PY) -m infra.tools.command send "$(DEVICE)" "$(CONNECTOR)" "$(COMPONENT)" "$(ACTION)" --params '$(PARAMS)' --wait "$(WAIT)"

command-show: $(PY) ## Show one command's audit row: make command-show ID=<command_id>
	@$(ENVSH) $(PY) -m infra.tools.command show "$(ID)"

command-list: $(PY) ## List a device's commands, newest first: make command-list DEVICE=f2-…
	@$(ENVSH) $(PY) -m infra.tools.command list "$(DEVICE)"

# make redrive [STAGE=] [REASON=] [DEVICE=] [SINCE=] [UNTIL=] [DRY_RUN=1] [MAX_REDRIVES=] [RATE=]
# make reprocess DEVICE= SINCE= [UNTIL=] [DRY_RUN=1]; SINCE/UNTIL: ISO time or a duration (6h, 2d).
# REDRIVE_ARGS / REPROCESS_ARGS pass more options (e.g. --json; see python -m infra.tools.redrive -h).
REDRIVE_ARGS ?=
REPROCESS_ARGS ?=
REPLAY_ENV = F2_METRICS_DIR="$(F2_STATE_DIR)/metrics"
opt = $(if $(strip $($(1))),$(2) "$(strip $($(1)))")

redrive: $(PY) ## Send dead letters back into their stage (STAGE= REASON= DEVICE= SINCE= UNTIL= DRY_RUN=1)
	@$(ENVSH) $(REPLAY_ENV) $(PY) -m infra.tools.redrive $(call opt,STAGE,--stage) \
	  $(call opt,REASON,--reason) $(call opt,DEVICE,--device) $(call opt,SINCE,--since) \
	  $(call opt,UNTIL,--until) $(call opt,MAX_REDRIVES,--max-redrives) $(call opt,RATE,--rate) \
	  $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) $(REDRIVE_ARGS)

reprocess: $(PY) ## Decode a device's raw records again and overwrite its rows (DEVICE= SINCE= [UNTIL=] [DRY_RUN=1])
	@test -n "$(DEVICE)" -a -n "$(SINCE)" || { echo "usage: make reprocess DEVICE=f2-<mac> SINCE=<time|6h> [UNTIL=...]" >&2; exit 2; }
	@$(ENVSH) $(REPLAY_ENV) $(PY) -m infra.tools.reprocess $(call opt,DEVICE,--device) \
	  $(call opt,SINCE,--since) $(call opt,UNTIL,--until) \
	  $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) $(REPROCESS_ARGS)

HELM := $(F2_TOOLS_DIR)/bin/helm
# faas-cli cannot be installed here (the Go module proxy refuses github.com/openfaas/*): give
# one with FAAS_CLI=/path/to/faas-cli where you have it.
FAAS_CLI ?=

helm: ## Build helm v3.19.0 from its Go module into .tools/bin (idempotent)
	@bash infra/tools/setup/install-helm.sh

deploy-local: $(PY) ## Redeploy changed functions on the running local stack (shrinkwrap, then deploy)
	@$(ENVSH) if [ -n "$(FAAS_CLI)" ] && [ -x "$(FAAS_CLI)" ]; then \
	  "$(FAAS_CLI)" build --shrinkwrap -f stack.yml && \
	  "$(FAAS_CLI)" login --gateway "$$GATEWAY_URL" --username "$$GATEWAY_USERNAME" \
	    --password-stdin < "$$F2_SECRETS_DIR/basic-auth-password" && \
	  "$(FAAS_CLI)" deploy -f stack.yml --gateway "$$GATEWAY_URL"; \
	else \
	  $(RT) build && $(PY) -m infra.deploy.docker.deploy_functions -f stack.yml --gateway "$$GATEWAY_URL"; \
	fi

k8s-generate: $(PY) ## Regenerate what Kubernetes takes from stack.yml: the chart's function list, KEDA objects
	@$(PY) -m infra.deploy.k8s_functions

keda: k8s-generate ## Alias of k8s-generate (the KEDA ScaledObjects are part of it)

prometheus-targets: ## Show the local Prometheus's scrape targets and their health
	@$(ENVSH) $(PY) -m infra.local.launch.prometheus targets --url "$$PROMETHEUS_URL"

autoscale-demo: $(PY) ## Deploy a test-only slow function on the running stack, burst into it, watch it scale
	@F2_AUTOSCALER_STACK=1 $(VENV)/bin/pytest -s tests/integration/test_autoscaler_scaling.py

clean: down ## Stop the stack and delete its state, build folders and caches
	@rm -rf $(F2_STATE_DIR) build .pytest_cache .mypy_cache .ruff_cache

.PHONY: chaos
CHAOS_ARGS ?=
chaos: setup-runtime ## Kill every part under load, count what was lost (not part of make test; ~1 h on 2 cores)
	@$(PY) -m infra.tools.chaos $(CHAOS_ARGS)

.PHONY: bench
BENCH_ARGS ?=
bench: setup-runtime ## Run the benchmarks (not part of make test); writes bench-results/latest.json
	@bash infra/tools/setup/install-telegraf.sh || echo "[bench] telegraf not built: the peer phase is skipped"
	@$(PY) -m infra.tools.bench $(BENCH_ARGS)
