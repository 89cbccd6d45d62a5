# sbx — see README.md.
#   make run    set up this machine (as root), build, prepare the default image, start sbx serve
#   make test   the whole test suite, root tests included

GO        ?= go
PREFIX    ?= /usr/local
STATE_DIR ?= /var/lib/sbx
LISTEN    ?= 127.0.0.1:7070
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/sbx-sh/sbx/internal/daemon.Version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all build agent deps run test test-short bench clean

all: build

agent:
	$(GO) build -trimpath -ldflags "-s -w" -o internal/agentbin/bin/sbx-agent ./cmd/sbx-agent

build: agent
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/sbx ./cmd/sbx
	cp internal/agentbin/bin/sbx-agent bin/sbx-agent

# System packages and runtimes sbx needs (Debian/Ubuntu, as root).
deps:
	./scripts/setup.sh

run: deps build
	./scripts/run.sh "$(STATE_DIR)" "$(LISTEN)"

test: build
	$(GO) vet ./...
	SBX_BIN=$(CURDIR)/bin/sbx $(GO) test -count=1 -timeout 45m ./...

test-short:
	$(GO) test -short -count=1 ./...

bench: build
	$(GO) run ./bench -sbx bin/sbx -n 100 -parallel 10

clean:
	rm -rf bin internal/agentbin/bin/sbx-agent
