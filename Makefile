# datavolume — the CDI DataVolume API as an aggregated API server.
# `make help` lists the targets.

SHELL := /usr/bin/env bash -o errexit -o pipefail -o nounset
.DEFAULT_GOAL := help

GO          ?= go
OUTPUT      := _output
BIN         := $(OUTPUT)/bin
CACHE       := $(or $(DATAVOLUME_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/datavolume)
# The versions are pinned once, in hack/lib.sh.
KUBE_VERSION := $(shell sed -n 's/^KUBE_VERSION=//p' hack/lib.sh)
ETCD_VERSION := $(shell sed -n 's/^ETCD_VERSION=//p' hack/lib.sh)
KUBE_BIN    := $(CACHE)/kube-$(KUBE_VERSION)/bin
ETCD        := $(CACHE)/etcd-$(ETCD_VERSION)/bin/etcd
# The API server, the webhook and the controller run in images with no C library.
STATIC_COMMANDS := datavolume-apiserver datavolume-webhook datavolume-controller
CLUSTER_TOOLS := etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns local-path-provisioner
export GOFLAGS ?= -buildvcs=false
# What --version prints and the images' labels say: the nearest v* tag (or
# v0.0.0-dev) and the commit, "-dirty" when the tree has changes.
VERSION     ?= $(shell git describe --tags --match 'v*' --dirty 2>/dev/null || echo v0.0.0-dev)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS     := -X github.com/datavolume/datavolume/pkg/version.version=$(VERSION) -X github.com/datavolume/datavolume/pkg/version.revision=$(REVISION)
export VERSION REVISION
# When make started, so `make run` reports its whole time to ready, builds included.
MAKE_STARTED := $(shell date +%s%N)

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Build

.PHONY: build
# -v names each package as it compiles (nothing when the cache is warm), so a
# first build shows progress rather than minutes of `go: downloading`.
build: ## Build our commands into _output/bin (static, but for the cloner: it links liblzma and runs on Debian).
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -v -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(STATIC_COMMANDS)) ./hack/local-up
	CGO_ENABLED=1 $(GO) build -v -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/datavolume-cloner
	@hack/check-versions.sh $(BIN) $(REVISION) $(STATIC_COMMANDS) datavolume-cloner local-up

.PHONY: preflight
preflight: ## Check in a second what the machine must provide (Linux with apt, root, Go, kernel features, disk), before any build.
	@hack/preflight.sh

.PHONY: deps
deps: preflight ## Install the Debian packages and build the cluster tools (cached by version).
	hack/install-deps.sh
	hack/build-tools.sh $(CLUSTER_TOOLS)

.PHONY: images
images: deps build ## Build the container images of the local cluster (no Docker; go-containerregistry) into _output/images.
	hack/build-images.sh

.PHONY: push
push: images ## Push every image to REGISTRY (host[:port][/prefix]) under TAG (default: VERSION), with go-containerregistry.
	@test -n "$(REGISTRY)" || { echo "make push needs REGISTRY=host[:port][/prefix]"; exit 1; }
	$(BIN)/imagebuild push --images-dir $(OUTPUT)/images --registry $(REGISTRY) --tag $(or $(TAG),$(VERSION))

##@ Run

.PHONY: run
run: deps build images ## Start the embedded default: a real single-node cluster running our components; Ctrl-C stops it.
	$(BIN)/local-up --kube-bin-dir $(KUBE_BIN) --etcd $(ETCD) --images $(OUTPUT)/images --started-at $(MAKE_STARTED) $(LOCAL_UP_FLAGS)

##@ Test

# Fuzzing budgets are counts of inputs, not durations: a duration can end
# in a spurious "context deadline exceeded" on a loaded machine (Go's fuzz
# coordinator, golang/go#75804, fixed only in Go 1.27). A few seconds each.
FUZZ_REVIEWS  ?= 2000x
FUZZ_SNIFFS   ?= 100000x
FUZZ_ARCHIVES ?= 2000x

.PHONY: test
test: deps build images ## Unit, registry, fuzz (briefly) and e2e tests (real control plane, real kubectl).
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./pkg/cloner/clone ./pkg/cloner/sink ./pkg/cloner/internal/... ./pkg/cloner/importer
	$(GO) test -run '^$$' -fuzz '^FuzzAdmissionReview$$' -fuzztime $(FUZZ_REVIEWS) ./pkg/webhook/endpoints
	$(GO) test -run '^$$' -fuzz '^FuzzSniff$$' -fuzztime $(FUZZ_SNIFFS) ./pkg/cloner/format
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZ_ARCHIVES) ./pkg/cloner/archive
	$(GO) vet -tags e2e ./e2e/bench/
	$(E2E_ENV) $(GO) test -count=1 -tags e2e -timeout 30m -v ./e2e/ 2>&1 | tee $(OUTPUT)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' || { echo '--- what the failed tests said:'; awk -f hack/test-failures.awk $(OUTPUT)/e2e.log $(OUTPUT)/e2e.log | tail -300; echo '--- the log ends:'; tail -30 $(OUTPUT)/e2e.log; exit 1; }

E2E_ENV = DATAVOLUME_KUBE_BIN=$(KUBE_BIN) DATAVOLUME_ETCD=$(ETCD) DATAVOLUME_IMAGES=$(abspath $(OUTPUT)/images)

.PHONY: bench
bench: deps build images ## Benchmarks, each against a baseline measured in the same run, printed as ratios.
	$(E2E_ENV) $(GO) test -tags e2e -run '^$$' -bench . -benchtime 1x -timeout 150m ./e2e/bench/
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./pkg/webhook/...
	hack/bench-cloner.sh

##@ Code quality

.PHONY: update-codegen
update-codegen: ## Regenerate deepcopy, conversion, defaults, OpenAPI, clientset, listers, informers, apply configurations.
	hack/update-codegen.sh

.PHONY: verify
verify: ## Fail on generated-code drift, gofmt, go vet or an untidy go.mod.
	hack/verify-codegen.sh
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	hack/verify-gomod.sh

.PHONY: clean
clean: ## Remove _output (the cached cluster tools stay).
	rm -rf $(OUTPUT)
