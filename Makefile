# vmm build, checks and tests. `make test` is the README's test command and
# what .ci/run runs.

GO ?= go
# Packages whose tests need no sandbox (unit tests, tiny-guest KVM tests).
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -E '/tests(/|$$)')

.PHONY: build check test deps

# Debian packages the sandbox and the tests need. `make deps` installs the
# missing ones (as root); boot and test depend on it, so both README
# commands work on a fresh machine.
DEPS = qemu-system-x86 busybox-static cpio lz4 xz-utils e2fsprogs acpica-tools iproute2 ca-certificates

# install-missing installs the Debian packages in $(1) that are not installed.
define install-missing
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install-missing,$(DEPS))

build:
	CGO_ENABLED=0 $(GO) build -o bin/vmm ./cmd/vmm

check:
	$(GO) vet ./...
	$(GO) test -race $(UNIT_PKGS)

# --- Sandbox and end-to-end tests (tests/) ------------------------------
# The scenarios in tests/ boot real guests with bin/vmm's source built
# static, in the nested-KVM sandbox (QEMU TCG emulating AMD-V) or directly
# on hosts with hardware KVM; see tests/sandbox. Extra vmm arguments for the
# demo: make boot ARGS="--cpus 2".
.PHONY: e2e boot prepare

test: deps check e2e

# prepare first: the kvm_guest kernel build (once) must not count against
# the go test timeout.
e2e: prepare
	$(GO) test -count=1 -timeout 60m -v ./tests/...

boot: deps
	$(GO) run ./tests/cmd/sandbox boot -- $(ARGS)

# Long runs, not part of `make test` (tests/soak_test.go): 200 boots in a
# row, 100 --on-reboot=restart cycles in one vmm, the network transfer
# (256 MiB each way) 20 times with 1 and 2 vCPUs and mergeable RX buffers on
# and off, and the two-guest bridge 20 times with 1 and 2 vCPUs. Sizes and
# counts: see tests/README.md (VMM_SOAK_*).
.PHONY: soak
soak: deps
	VMM_SOAK=1 $(GO) test -count=1 -timeout 900m -v -run 'TestSoak' ./tests/

# prepare also builds, once, the kvm_guest.config kernel of the virtio-pci
# scenarios (tests/guestkernel, tests/guest/kernel/kvmguest.config): 10 to
# 35 minutes on 2 cores, then cached in ~/.cache/vmm/guest-kernels.
prepare: deps
	$(GO) run ./tests/cmd/sandbox prepare

# --- Benchmarks: vmm against QEMU's microvm (tests/bench) ---------------
# Not part of `make test`. `make bench` boots the same guests with both VMMs,
# alternating, in one sandbox run, and prints medians and ratios (results
# also in bench-results.json); options: make bench BENCH_ARGS="--runs 3".
# guest-kernel builds the minimal guest kernel (tests/guest/kernel) once into
# the artifact cache: 3 to 10 minutes, reused while its config is the same.
.PHONY: bench bench-deps guest-kernel

# strace times both VMMs' start-up; the kernel build installs its own tools.
BENCH_DEPS = strace

bench-deps: deps
	$(call install-missing,$(BENCH_DEPS))

guest-kernel:
	$(GO) run ./tests/bench guest-kernel

bench: bench-deps guest-kernel
	$(GO) run ./tests/bench $(BENCH_ARGS)
