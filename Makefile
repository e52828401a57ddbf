# promshard — the targets people know. `make test` is the one test command
# (README and .ci/run call exactly this).

GO          ?= go
BIN         ?= bin
E2E_TIMEOUT ?= 75m
FUZZTIME    ?= 20s
HELM_VERSION := v4.3.2
HELM        := .cache/bin/helm
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X github.com/prometheus/common/version.Version=$(VERSION) \
               -X github.com/prometheus/common/version.Revision=$(shell git rev-parse HEAD 2>/dev/null) \
               -X github.com/prometheus/common/version.Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)

.PHONY: all build test unit fuzz e2e bench bench-vs-agent bench-scale bench-status demo crds check-crds lint helm helm-lint

all: build

## build: the promshard binary into bin/
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/promshard ./cmd/promshard

## test: unit tests with the race detector, a short fuzz run, then the e2e tests on the real test bed
test: unit fuzz e2e

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzGenerate$$' -fuzztime=$(FUZZTIME) ./config
	$(GO) test -run='^$$' -fuzz='^FuzzProbeAndScrapeConfig$$' -fuzztime=$(FUZZTIME) ./config

## e2e: real etcd + kube-apiserver + Prometheus receiver + promshard processes (needs root for ip netns)
e2e:
	$(GO) test -tags e2e -count=1 -p 1 -timeout $(E2E_TIMEOUT) -v ./e2e/...

## bench: translation, hashing and apply-latency benchmarks
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./config ./sharding
	$(GO) test -tags e2e -run='^$$' -bench=. -benchtime=60x -timeout 30m ./e2e/

## bench-vs-agent: promshard vs `prometheus --agent` on the same test-bed targets, A B interleaved; prints CPU s/1M samples and RSS/series with ratios (~10 min; BENCH_ARGS="-rounds=5 ...")
bench-vs-agent:
	$(GO) run ./e2e/cmd/bench-vs-agent $(BENCH_ARGS)

## bench-scale: many ServiceMonitors over many targets, 3 replicas; prints per replica time to own all targets, idle and churn CPU/RSS, apply latency, watches (BENCH_ARGS="-monitors=5000 ...")
bench-scale:
	$(GO) run ./e2e/cmd/bench-scale $(BENCH_ARGS)

## bench-status: the initial status pass, 5,000 ServiceMonitors and 3 replicas started at once; prints the time until every monitor is bound, the writes per replica and how fast informers still see changes (~2 min; BENCH_ARGS="-qps=50 -burst=100 ...")
bench-status:
	$(GO) run ./e2e/cmd/bench-status $(BENCH_ARGS)

## demo: control plane, sample targets, receiver and three promshard replicas
demo:
	$(GO) run ./e2e/cmd/demo

## crds: regenerate deploy/crds from the pinned prometheus-operator module
crds:
	bash hack/gen-crds.sh deploy/crds

check-crds:
	bash hack/check-crds.sh

## helm: the pinned helm CLI into .cache/bin, unless it is there (a Go module build; ~2 minutes cold)
helm:
	@$(HELM) version --short 2>/dev/null | grep -qx '$(HELM_VERSION)' || { \
		echo "building helm $(HELM_VERSION) into $(HELM)"; \
		GOBIN=$(CURDIR)/.cache/bin GOFLAGS=-mod=mod $(GO) install \
			-ldflags '-X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)' helm.sh/helm/v4/cmd/helm@$(HELM_VERSION) && \
		$(HELM) version --short | grep -qx '$(HELM_VERSION)'; }

## helm-lint: helm lint --strict of the chart in both modes
helm-lint: helm
	$(HELM) lint --strict deploy/helm/promshard
	$(HELM) lint --strict deploy/helm/promshard --set mode=daemonset

lint: helm-lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
