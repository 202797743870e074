# steprun — every workflow a developer or CI needs, in one place.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
CLUSTER ?= local
K8S_BIN := $(shell bash -c '. hack/versions.sh; k8s_bin_dir')
LOCAL_KUBECONFIG := $(CURDIR)/.cluster/kubeconfig
# Tests use the cluster KUBECONFIG points at; without one, the local cluster.
TEST_KUBECONFIG := $(if $(KUBECONFIG),$(KUBECONFIG),$(LOCAL_KUBECONFIG))
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create the virtualenv with the project and its dev tools

.PHONY: lint
lint: venv ## ruff, mypy and the import contracts (pyproject.toml)
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/ruff format --check operator tests bench hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: crds
crds: venv ## regenerate crds/ from the pydantic models
	$(PY) -m steprun.api.crdgen --out crds

.PHONY: unit
unit: venv ## unit tests only (no cluster)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: cluster-up
cluster-up: ## bring up the local cluster (CLUSTER=kind for kind; KWOK_NODES=N for fake nodes)
	CLUSTER=$(CLUSTER) hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## stop everything the local cluster started
	CLUSTER=$(CLUSTER) hack/cluster-down.sh

.PHONY: cluster-status
cluster-status: ## show the local cluster's components and node
	hack/cluster-status.sh

.PHONY: test
test: lint ## the whole suite: lint, unit tests, then cluster tests (brings the cluster up)
	$(if $(KUBECONFIG),,CLUSTER=$(CLUSTER) hack/cluster-up.sh)
	KUBECONFIG=$(TEST_KUBECONFIG) PATH=$(K8S_BIN):$$PATH $(VENV)/bin/pytest tests $(PYTEST_ARGS)

.PHONY: operator
operator: venv ## run the operator against the current cluster (all namespaces)
	KUBECONFIG=$(TEST_KUBECONFIG) $(PY) -m steprun operator --all-namespaces

# ---------------------------------------------------------------- deploy like an operator

.PHONY: image
image: venv ## build the operator image and import it into containerd (no Docker needed)
	hack/images/build-operator-image.sh

.PHONY: helm
helm: ## build the pinned helm from its Go module (cached)
	hack/install-helm.sh

.PHONY: manifests
manifests: helm ## regenerate manifests/ (and the chart's CRDs) from the Helm chart
	hack/gen-manifests.sh

.PHONY: demo
demo: venv ## cluster, image, helm, chart in steprun-system; run examples/ in steprun-demo
	hack/demo.sh

# The manifest tests render the chart: CI must have helm rather than skip them.
test: helm

BENCH_SIZES ?= 100,1000
BENCH_RATES ?= 10,50,burst
BENCH_NODES ?= kwok
BENCH_KWOK_NODES ?= 2
KUBECTL := $(if $(wildcard $(K8S_BIN)/kubectl),$(K8S_BIN)/kubectl,kubectl)

.PHONY: bench
bench: venv ## StepRun vs Job benchmark: BENCH_SIZES, BENCH_RATES, BENCH_NODES=kwok|real (docs/benchmark.md)
	$(if $(filter kwok,$(BENCH_NODES)),hack/kwok-up.sh $(BENCH_KWOK_NODES))
	$(KUBECTL) --kubeconfig $(TEST_KUBECONFIG) apply --server-side --force-conflicts -f crds >/dev/null
	KUBECONFIG=$(TEST_KUBECONFIG) BENCH_SIZES=$(BENCH_SIZES) BENCH_RATES=$(BENCH_RATES) \
		BENCH_NODES=$(BENCH_NODES) $(PY) -m bench

# ---------------------------------------------------------------- the TypeScript runner

TS_CLIENT := clients/typescript

$(TS_CLIENT)/node_modules/.installed: $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund
	touch $@

.PHONY: typescript
typescript: $(TS_CLIENT)/node_modules/.installed ## the TypeScript runner: npm ci, type check, unit tests
	cd $(TS_CLIENT) && npm run --silent typecheck && npm test

# Its end-to-end tests run inside the cluster suite (tests/cluster/test_typescript_runner.py).
test: typescript

.PHONY: prometheus
prometheus: ## install Prometheus and promtool (Debian package prometheus) for the monitoring tests
	hack/install-prometheus.sh >/dev/null

# The alert-rule tests run promtool and the deploy test a real Prometheus: CI must have both.
test: prometheus

.PHONY: bench-cli
bench-cli: venv ## how fast the CLI answers, beside kubectl get (bench/results/cli-startup.md)
	KUBECONFIG=$(TEST_KUBECONFIG) PATH=$(K8S_BIN):$$PATH $(PY) -m bench.cli_startup

# ---------------------------------------------------------------- artifacts

.PHONY: helper-test
helper-test: ## go vet and go test of the artifact helper (helper/)
	cd helper && go vet ./... && go test ./...

test: helper-test

.PHONY: bench-artifacts
bench-artifacts: venv ## a 1 GiB artifact through the store, with peak memory (bench/artifacts.py)
	KUBECONFIG=$(TEST_KUBECONFIG) $(PY) -m bench.artifacts
