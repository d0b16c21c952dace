# xvif: build, run and test. Every target installs what it needs on a fresh
# Debian machine (tests/deps.sh says what it installs).

ELF      := target/x86_64-unknown-none/release/xvif
TARGET   := x86_64-unknown-none
CARGO    ?= cargo
PYTEST   := python3 -m pytest -v -p no:cacheprovider --durations=15
QEMU     ?= qemu-system-x86_64
# Interactive runs still end on their own after this many seconds.
RUN_TIMEOUT ?= 3600

.PHONY: xen-stress xen-hostile xen-hvm xen-hvm-pt bench-xen bench-nic bench-mem fuzz fuzz-build fuzz-smoke all build run run-qemu test host-test qemu-test xen-test xen-deps lint fmt bench deps clean

all: build

deps:
	@bash tests/deps.sh qemu

build:
	@bash tests/deps.sh build
	$(CARGO) build --release --target $(TARGET)
	@echo "xvif: $(ELF) is $$(stat -c %s $(ELF)) bytes"

# The real demo: Xen 4.17 + Linux dom0 nested in QEMU (TCG), xvif as the
# network driver domain in an HVM container owning a NIC wired to a peer
# outside Xen, a Linux PV guest served by it that pings the peer and fetches
# a file from it; leaves you at dom0's shell.
run: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) python3 tests/xen/demo.py

# xvif alone in QEMU (TCG) with an e1000 on user-mode networking, no Xen.
# Type `status` or `poweroff` at the console; Ctrl-A X quits QEMU.
run-qemu: build deps
	@echo "xvif: booting in QEMU TCG (console below; type 'status' or 'poweroff'; Ctrl-A X quits)"
	timeout --foreground $(RUN_TIMEOUT) $(QEMU) -machine q35 -accel tcg -cpu max -m 128M \
	    -display none -monitor none -serial mon:stdio -no-reboot \
	    -device isa-debug-exit,iobase=0xf4,iosize=4 \
	    -netdev user,id=n0 -device e1000,netdev=n0,romfile= \
	    -kernel $(ELF) -append "$(ARGS)"; rc=$$?; \
	    if [ $$rc = 33 ] || [ $$rc = 0 ]; then echo "xvif: powered off"; else echo "xvif: exit status $$rc"; exit $$rc; fi

host-test:
	@bash tests/deps.sh build
	$(CARGO) test --all-targets

qemu-test: build deps
	cd tests/qemu && $(PYTEST) .

lint:
	@bash tests/deps.sh build
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(TARGET) -- -D warnings
	@bash tests/check-unsafe.sh

fmt:
	$(CARGO) fmt

# Xen 4.17 nested in QEMU: xvif as a PVH domU and as the driver domain of
# Linux PV guests (tests/xen). The image is cached in ~/.cache/xvif.
xen-deps:
	bash tests/xen/setup.sh
	bash tests/xen/build-image.sh

# Three sessions, each on a freshly booted Xen: xvif as a PVH domain (no
# outer wire, no HVM domain), then the HVM container with an emulated NIC
# and make run's demo (outer wire), then test_hvm_pt.py on a q35 with an
# IOMMU, where the outer NIC is passed through to xvif.
xen-test: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) $(PYTEST) tests/xen --ignore=tests/xen/test_hvm.py \
		--ignore=tests/xen/test_hvm_pt.py --ignore=tests/xen/test_demo.py
	$(MAKE) --no-print-directory xen-hvm
	$(MAKE) --no-print-directory xen-hvm-pt

# xvif as an HVM container owning an e1000 emulated by qemu-xen, Linux PV
# guests behind it reaching a peer outside Xen (tests/xen/test_hvm.py), and
# make run's demo on it (tests/xen/test_demo.py).
xen-hvm: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) $(PYTEST) tests/xen/test_hvm.py tests/xen/test_demo.py

# The same with the outer e1000 passed through to xvif (tests/xen/test_hvm_pt.py):
# the outer machine a q35 with QEMU's intel-iommu, Xen with iommu=verbose.
xen-hvm-pt: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) XVIF_XEN_IOMMU=$${XVIF_XEN_IOMMU:-intel} $(PYTEST) tests/xen/test_hvm_pt.py

# test_load.py with its ping flood, which trips the nested emulator's triple
# fault in about half the runs (tests/xen/nested-repro/README.md).
xen-stress: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) XVIF_XEN_STRESS=1 $(PYTEST) tests/xen/test_load.py

# The hostile netfront alone (tests/xen/test_hostile.py, also part of
# xen-test), about 15 minutes.
xen-hostile: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) $(PYTEST) tests/xen/test_hostile.py

test: lint host-test fuzz-smoke qemu-test xen-test
	@echo "make test: all suites passed"

# Benchmarks (not tests: they print numbers, they assert nothing about speed).
# boot_time.py: PVH entry to ready under QEMU.
# net_bench.py: UDP echo pkt/s and ping RTT, xvif vs a Linux guest, per NIC model.
# netback_sim.sh: TX -> switch -> RX on the host, fake grant copy = memcpy.
# bench-xen: guest<->guest through xvif and through a Linux driver domain.
# bench-nic: guest<->outside with the NIC passed through, xvif vs a Linux driver domain.
bench: build deps
	python3 tests/bench/boot_time.py
	python3 tests/bench/net_bench.py
	bash tests/bench/netback_sim.sh 3
	$(MAKE) --no-print-directory bench-xen
	$(MAKE) --no-print-directory bench-nic
	$(MAKE) --no-print-directory bench-mem

# Guest-to-guest TCP throughput and ping RTT through xvif and through a Linux
# driver domain (netback + bridge) in the same nested-Xen run. Run it on an
# idle machine: it shares the 2 cores with nothing else.
bench-xen: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) python3 tests/bench/xen_netbench.py

# Guest -> outside and back with the outer e1000 passed through (IOMMU
# session, as xen-hvm-pt): TCP each way, ping RTT, boot-to-ready and the
# smallest memory= of xvif (HVM container) against a Linux driver domain
# given the same NIC by PV passthrough. One run took 7 minutes, memory
# search included; BENCH_NIC_ARGS=--no-mem skips that search.
bench-nic: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) python3 tests/bench/xen_nicbench.py $(BENCH_NIC_ARGS)

# The smallest memory= that serves 1, 8 and 32 vifs, found by trying on the
# nested Xen (about 40 minutes), and what one vif costs.
bench-mem: build xen-deps
	XVIF_ELF=$(CURDIR)/$(ELF) python3 tests/bench/xen_memory.py

# Fuzzing (fuzz/fuzz.sh): libFuzzer through the libfuzzer-sys crate on the
# pinned stable toolchain (rustc's stable coverage flags; no nightly, no
# cargo-fuzz). Targets: xenstore replies, TX ring, RX ring, xenbus backend,
# switch ingress/offload, management ingress filter. Each runs in one
# process; a crash fails the run and leaves its input in fuzz/artifacts/.
# fuzz-smoke is part of `make test`; `make fuzz` is the long run.
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SECONDS ?= 600
fuzz-build:
	@bash tests/deps.sh fuzz
	bash fuzz/fuzz.sh build

fuzz-smoke: fuzz-build
	bash fuzz/fuzz.sh run $(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-build
	bash fuzz/fuzz.sh run $(FUZZ_SECONDS)

clean:
	$(CARGO) clean
