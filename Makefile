# streamchat developer targets. `make test` is what CI runs.
GO ?= go

.PHONY: test prereqs fmt-check vet unit deploy-test fuzz chaos abuse run bench bench-rooms bench-floor bench-conns bench-micro screenshot build

test: prereqs fmt-check vet unit deploy-test fuzz chaos abuse

# What the tests need (redis-server 7+, nginx, Chromium, git, make): missing
# ones are installed with apt-get when run as root, otherwise this stops
# with the command to run. CHAT_TEST_NO_INSTALL=1 never installs.
prereqs:
	@.ci/prereqs

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every package, with the race detector; tests that need Redis start their
# own redis-server (install it with: apt-get install -y redis-server).
unit:
	$(GO) test -race -count=1 ./...

# The deployment files, checked by their own parsers in a separate module
# (compose-go, buildkit's Dockerfile parser, kustomize, nginx -t).
deploy-test:
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

# A few seconds of coverage-guided fuzzing of the client-frame decoder on top
# of its seed corpus (the seeds also run as part of `unit`).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 10s ./pkg/chat

# The fault run (docs/reliability.md): a redis-server with the append-only
# file, three replicas behind a load balancer, reconnecting clients; rolling
# restarts, crashes and stalls of replicas and of Redis, one at a time with
# traffic flowing. Fails on any acknowledged send lost, duplicate or
# reordering. The short form runs in `make test`; CHAOS_FLAGS=-full for
# the full one.
chaos: build
	bin/chatload chaos $(CHAOS_FLAGS)

# The abuse run: garbage, huge and half frames, floods of messages and of
# typing notices, edits of others' messages and bad reactions, handshake
# bursts, deaf and idle sockets beside checked normal traffic. Fails if a replica
# dies, normal traffic is not exact, or descriptors and memory do not come
# back down. ABUSE_FLAGS=-full for 90 s of abuse.
abuse: build
	bin/chatload abuse $(ABUSE_FLAGS)

run:
	$(GO) run ./cmd/gateway

build:
	$(GO) build -o bin/gateway ./cmd/gateway
	$(GO) build -o bin/chatload ./cmd/chatload

# The standard comparison: a throwaway redis-server and two gateway replicas,
# 20 rooms x 50 clients, 2 publishers per room, 64-byte messages, 30 s at 10,
# 50 and 100 messages/s per room, shared then direct tail mode, side by side.
bench: build
	bin/chatload suite -gateway bin/gateway -replicas 2 -modes shared,direct -rates 10,50,100 \
		-rooms 20 -clients 50 -publishers 2 -size 64 -duration 30s
	$(MAKE) bench-rooms
	$(MAKE) bench-floor

# Many small rooms, 1 message/s each, over two replicas: 2,000 rooms of 5
# and 5,000 direct-message-like rooms of 2; every delivery checked.
bench-rooms: build
	bin/chatload suite -gateway bin/gateway -replicas 2 -modes shared -rates 1 \
		-rooms 2000 -clients 5 -publishers 1 -size 64 -duration 30s
	bin/chatload suite -gateway bin/gateway -replicas 2 -modes shared -rates 1 \
		-rooms 5000 -clients 2 -publishers 1 -size 64 -duration 30s

# The cheapest delivery here: one pre-encoded frame, one write(2), to a
# loopback socket whose reader waits, at 10,000 and 50,000 deliveries/s; and
# the same fan-out with one io_uring_enter(2) per message, alternating.
bench-floor: build
	bin/chatload floor -methods write,uring,write,uring -rates 10000,50000 -duration 10s

# Idle connections on one replica, in steps: memory per connection and
# connect rate. Steps beyond the machine's open-file limit are reported, not run.
bench-conns: build
	bin/chatload suite -gateway bin/gateway -conns 10000,25000,50000

# Go micro-benchmarks: codec, one room's fan-out to 1,000 sessions, and the
# websocket write to 1,000 real connections.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

# docs/screenshot.png and docs/features.png come from the browser tests'
# own screenshot code: a conversation with an image, several senders and a
# day divider; and one with typing, an edit, a tombstone, reactions, a
# mention and an unread badge.
screenshot:
	@dir=$$(mktemp -d) && CHAT_TEST_ARTIFACTS=$$dir $(GO) test -count=1 -run '^(TestBrowserFilesAndHistory|TestBrowserConversationFeatures)$$' ./cmd/gateway && cp $$dir/conversation.png docs/screenshot.png && cp $$dir/features.png docs/features.png && rm -rf $$dir
