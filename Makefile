# Two entry points for a fresh machine: `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
CT     := $(VENV)/bin/calico-trace
SYSTEM_PACKAGES := iptables ipset conntrack tshark iproute2 tcpdump iperf3 curl iputils-ping chromium
SYSTEM_BINARIES := iptables-restore ipset conntrack tshark ip xtables-monitor tcpdump chromium iperf3 curl ping

.PHONY: demo test venv system-deps clean bench fuzz

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Debian packages the kernel-judge and framing tests use; installed only as root and only if missing.
system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "note: missing$$missing (run as root to install; root-only tests will say why they skip)"; exit 0; fi; \
	echo "installing Debian packages for:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null

demo: $(VENV)/.installed
	@echo "== Who may talk to whom (scenario: backend-from-frontend) =="
	$(CT) matrix -f scenarios/backend-from-frontend --protocol tcp --port 6379
	@echo
	@echo "== Why is this packet dropped? =="
	$(CT) packet -f scenarios/backend-from-frontend --from myns/other --to myns/backend --protocol tcp --port 6379 --verbosity summary

test: $(VENV)/.installed system-deps
	$(VENV)/bin/pytest -q -ra --durations=20
	$(CT) lab check

# The commands that produced benchmarks/RESULTS.md (each rewrites its own section).
bench: $(VENV)/.installed
	$(PY) benchmarks/bench_pipeline.py --packets 2000 --repeat 5 --write
	$(PY) benchmarks/bench_conntrack.py --packets 1000000 --repeat 3 --write
	$(PY) benchmarks/bench_matrix.py --pods 1000 --policies 1000
	$(PY) benchmarks/bench_encap.py 3000
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_capture.py --packets 1000000 --flows 10000 --repeat 5 --write
	$(PY) benchmarks/bench_engine.py --write
	$(PY) benchmarks/bench_scale.py --sizes 1000 2000 4000 10000 --repeat 3 --write

# The long fuzz campaign (tests/fuzzing.py strategies through the real entry point); its
# figures go to FUZZING.md. The fixed-seed part runs in `make test` (tests/test_fuzz_cli.py).
fuzz: $(VENV)/.installed
	$(PY) benchmarks/fuzz_campaign.py --cases 10000 --seed 9 --write

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
