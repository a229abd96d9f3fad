# streamchat developer targets. `make test` is what CI runs.
GO ?= go

.PHONY: test fmt-check vet unit fuzz run bench-micro screenshot

test: fmt-check vet unit fuzz

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every package, with the race detector; tests that need Redis start their
# own redis-server (install it with: apt-get install -y redis-server).
unit:
	$(GO) test -race -count=1 ./...

# A few seconds of coverage-guided fuzzing of the client-frame decoder on top
# of its seed corpus (the seeds also run as part of `unit`).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 10s ./pkg/chat

run:
	$(GO) run ./cmd/gateway

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

# docs/screenshot.png comes from the browser test's own screenshot code.
screenshot:
	@dir=$$(mktemp -d) && CHAT_TEST_ARTIFACTS=$$dir $(GO) test -count=1 -run '^TestBrowser$$' ./cmd/gateway && cp $$dir/b.png docs/screenshot.png && rm -rf $$dir
