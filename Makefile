# cxkv build, test and tooling. Everything a target needs it installs itself
# (protoc from Debian, Go tools from the module proxy), so a fresh machine with
# only Go and Debian's packages can run every target.

GO        ?= go
BIN       := bin/cxkv
GOBIN     := $(shell $(GO) env GOPATH)/bin
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# The version gRPC itself requires, so the generated code and its runtime
# (vtprotobuf's protohelpers) match.
PROTOC_GEN_GO_VTPROTO_VERSION := v0.6.1-0.20240319094008-0393e58bdf10
STATICCHECK_VERSION        := v0.8.2

# Packages with goroutines run under the race detector.
RACE_PKGS := ./kv/... ./raftnode/... ./internal/... ./cmd/cxkv/internal/... ./client/...

.PHONY: all build test test-plain test-race test-bench test-short lint proto proto-check demo bench bench-slow pgo chaos clean tools-proto tools-bench release

all: build

build:
	$(GO) build -o $(BIN) ./cmd/cxkv

# The whole suite: lint (gofmt, vet, staticcheck), the generated code against
# the .proto, every package, the race detector on the concurrent ones, the
# bench harness. Kept under 10 minutes on 2 cores. The passes run side by
# side: most of a pass's time is spent waiting on timers (leases, elections,
# hand-offs), and one after another they kept about one core of two busy.
test: build proto-check
	@$(MAKE) --no-print-directory -j4 lint test-plain test-race test-bench

test-plain:
	$(GO) test -count=1 -timeout 8m ./...

test-race:
	$(GO) test -count=1 -race -timeout 8m -short $(RACE_PKGS)

test-bench:
	cd bench && $(GO) test -count=1 -timeout 5m ./...

test-short:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	cd bench && $(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	cd bench && $(GOBIN)/staticcheck ./...

tools-proto:
	@command -v protoc >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	@test -x $(GOBIN)/protoc-gen-go || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@test -x $(GOBIN)/protoc-gen-go-grpc || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@test -x $(GOBIN)/protoc-gen-go-vtproto || $(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(PROTOC_GEN_GO_VTPROTO_VERSION)

# The generated Go code: the messages (api/cxkvpb) and the services
# (api/cxkvrpc) come from two .proto files in two Go packages, so code that
# needs only the messages does not link gRPC. The messages also get
# vtprotobuf's generated marshalling (MarshalVT, SizeVT; cxkv_vtproto.pb.go),
# which encodes the log's commands and the stored results (cmpxchg/command.go).
# PROTOC_GEN writes all of it under the directory $(1), laid out as in the
# repository.
PROTO_FILES := api/cxkvpb/cxkv.pb.go api/cxkvpb/cxkv_vtproto.pb.go api/cxkvrpc/cxkv_rpc.pb.go api/cxkvrpc/cxkv_rpc_grpc.pb.go
PROTOC_GEN = mkdir -p $(1)/api/cxkvpb $(1)/api/cxkvrpc && \
	protoc --proto_path=api/cxkvpb \
		--plugin=protoc-gen-go=$(GOBIN)/protoc-gen-go \
		--plugin=protoc-gen-go-vtproto=$(GOBIN)/protoc-gen-go-vtproto \
		--go_out=$(1)/api/cxkvpb --go_opt=paths=source_relative \
		--go-vtproto_out=$(1)/api/cxkvpb --go-vtproto_opt=paths=source_relative,features=marshal+size \
		api/cxkvpb/cxkv.proto && \
	protoc --proto_path=api/cxkvpb --proto_path=api/cxkvrpc \
		--plugin=protoc-gen-go=$(GOBIN)/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(GOBIN)/protoc-gen-go-grpc \
		--go_out=$(1)/api/cxkvrpc --go_opt=paths=source_relative \
		--go-grpc_out=$(1)/api/cxkvrpc --go-grpc_opt=paths=source_relative \
		api/cxkvrpc/cxkv_rpc.proto

# Regenerates the committed Go code from the .proto files.
proto: tools-proto
	$(call PROTOC_GEN,.)

# Regenerates into a temp dir and fails if the committed code differs: a
# change to a .proto must come with its generated code.
proto-check: tools-proto
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(call PROTOC_GEN,$$tmp) && \
	for f in $(PROTO_FILES); do \
		if ! cmp -s $$tmp/$$f $$f; then \
			echo "$$f differs from what make proto generates:"; diff -u $$f $$tmp/$$f | head -40; exit 1; \
		fi; \
	done

# The demo: a local 3-member cluster as child processes, 8 worker processes
# booking hotel rooms under locks, a live progress line, a table and a
# verdict from the workers' own records. Exits non-zero if an invariant
# broke; leaves nothing running and removes its temp data.
demo: build
	./$(BIN) demo run

# cxkv against etcd (both 3-member clusters on loopback) and a single
# durable Redis node (appendfsync always): every workload, alternating
# rounds; prints the table, writes bench/results/latest.json.
# BENCH_FLAGS passes flags, e.g. BENCH_FLAGS='-duration 20s -rounds 5'.
bench: tools-bench
	cd bench && ../bin/cxkvbench -cxkv ../$(BIN) $(BENCH_FLAGS)

# What bench and bench-slow run: etcd and Redis from Debian, the harness.
tools-bench: build
	@test -x /usr/bin/etcd || command -v etcd >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq etcd-server etcd-client)
	@test -x /usr/bin/redis-server || command -v redis-server >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq redis-server)
	cd bench && $(GO) build -o ../bin/cxkvbench ./cmd/cxkvbench

# The profile the compiler optimizes cxkv with: cmd/cxkv/default.pgo, which
# go build (and go install, make release, the Dockerfile) uses by itself.
# It is the three members' CPU profiles merged, taken under the bench's
# write, lock and read workloads on a cxkv-only cluster. Regenerate it and
# commit it after a change that moves where the members spend their time.
pgo: build
	cd bench && $(GO) build -o ../bin/cxkvbench ./cmd/cxkvbench
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	(cd bench && ../bin/cxkvbench -cxkv ../$(BIN) -backends cxkv -workloads cas-seq,cas-parallel,lock-contended,lock-many,get \
		-rounds 1 -duration 8s -kills 0 -hold 0 -chaos-for 0 -tls=false -plain=false -pprof $$tmp -out $$tmp/results.json -md $$tmp/results.md); \
	$(GO) tool pprof -proto $$tmp/*-cxkv-m*.cpu.pb.gz > cmd/cxkv/default.pgo.new; \
	mv cmd/cxkv/default.pgo.new cmd/cxkv/default.pgo
	@ls -l cmd/cxkv/default.pgo

# bench on an emulated slower disk: every backend process, and the fsync
# floor, runs under a seccomp filter that hands each fsync and fdatasync to
# the harness, which holds it SLOW_SYNC before letting it run (0s: the
# notification round trip alone). The same for every backend; compare its
# figures with other bench-slow runs, not with bench's.
# SLOW_SYNC=100us make bench-slow; BENCH_FLAGS as for bench.
SLOW_SYNC ?= 0s
bench-slow: tools-bench
	cd bench && ../bin/cxkvbench -cxkv ../$(BIN) -slow-sync $(SLOW_SYNC) $(BENCH_FLAGS)

# Real member processes under a seeded schedule of partitions (through
# proxies the harness controls), kill -9, restarts and SIGSTOP while clients
# write and take locks; then every history is checked (linearizability with
# porcupine, fenced locks, watch exactly once, no acknowledged write lost).
# Prints the seed and a table; exits non-zero on any anomaly, keeping the
# history, porcupine's visualisation and the logs under chaos-out/.
# CHAOS_DURATION=30m make chaos; CHAOS_FLAGS='-seed N' replays a schedule.
# The members are built with -tags invariants (internal/invariants): an
# assertion that fails panics its member, and the run reports the member's
# exit as an anomaly.
CHAOS_DURATION ?= 2m
chaos:
	$(GO) build -tags invariants -o bin/cxkv-invariants ./cmd/cxkv
	$(GO) build -o bin/cxkv-chaos ./cmd/cxkv-chaos
	./bin/cxkv-chaos -bin bin/cxkv-invariants -out chaos-out -duration $(CHAOS_DURATION) $(CHAOS_FLAGS)

# Static binaries (no cgo) for linux and darwin on amd64 and arm64 in dist/,
# named cxkv-VERSION-OS-ARCH, with VERSION and the commit stamped in
# (cxkv version prints them) and dist/SHA256SUMS (sha256sum -c checks it).
# VERSION defaults to git describe; make release VERSION=v1.2.3 overrides.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
RELEASE_LDFLAGS := -s -w -X github.com/cxkv/cxkv/raftnode.version=$(VERSION) -X github.com/cxkv/cxkv/raftnode.revision=$(REVISION)
RELEASE_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

release:
	rm -rf dist && mkdir -p dist
	@set -e; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out=dist/cxkv-$(VERSION)-$$os-$$arch; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(RELEASE_LDFLAGS)' -o $$out ./cmd/cxkv; \
	done
	cd dist && sha256sum cxkv-* > SHA256SUMS
	@cat dist/SHA256SUMS

clean:
	rm -rf bin cxkv-data chaos-out dist
