# netloom: the two commands of the README are `make demo` and `make test`.
# Both install what they need (apt packages, .venv, the BPF object) and are idempotent.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
APT_PKGS := zookeeper default-jre-headless clang llvm libbpf-dev bpftool iproute2 ethtool \
            iperf3 sockperf isc-dhcp-client udhcpc python3-venv procps linux-perf bird2 systemd \
            libcap2-bin nfdump prometheus openssh-server libslf4j-java
BPF_SRC := src/netloom/datapath/bpf/netloom.bpf.c
BPF_OBJ := build/netloom.bpf.o
STAMP := build/.stamp

.PHONY: demo test deps sysdeps venv bpf keystone ansible lint clean dist

demo: deps bpf
	$(VENV)/bin/netloom demo

test: deps bpf keystone ansible dist
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: deps
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy src tests

deps: sysdeps venv

# apt: install only what is missing, so a second run touches nothing.
sysdeps: $(STAMP)-apt
$(STAMP)-apt: Makefile
	@mkdir -p build
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	  | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

venv: $(STAMP)-venv
$(STAMP)-venv: pyproject.toml
	@mkdir -p build
	@[ -x $(VPY) ] || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

# Keystone (the Neutron API's --auth keystone tests run a real one, SQLite backend) lives in a
# virtualenv of its own: its dependencies are many and pinned, and must not move netloom's.
KEYSTONE_VENV := build/keystone
KEYSTONE_VERSION := 30.0.0
keystone: $(STAMP)-keystone
$(STAMP)-keystone:
	@mkdir -p build
	@[ -x $(KEYSTONE_VENV)/bin/python ] || $(PY) -m venv $(KEYSTONE_VENV)
	$(KEYSTONE_VENV)/bin/python -m pip install -q --upgrade pip
	$(KEYSTONE_VENV)/bin/python -m pip install -q 'keystone==$(KEYSTONE_VERSION)'
	@touch $@

# ansible-core (the deploy/ansible playbook and its test over SSH) lives in a virtualenv of its
# own too: its pins (jinja2, resolvelib, cryptography) must not move netloom's.
ANSIBLE_VENV := build/ansible
ANSIBLE_VERSION := 2.19.14
ansible: $(STAMP)-ansible
$(STAMP)-ansible:
	@mkdir -p build
	@[ -x $(ANSIBLE_VENV)/bin/python ] || $(PY) -m venv $(ANSIBLE_VENV)
	$(ANSIBLE_VENV)/bin/python -m pip install -q --upgrade pip
	$(ANSIBLE_VENV)/bin/python -m pip install -q 'ansible-core==$(ANSIBLE_VERSION)'
	@touch $@

bpf: $(BPF_OBJ)
$(BPF_OBJ): $(wildcard src/netloom/datapath/bpf/*.c src/netloom/datapath/bpf/*.h) | sysdeps
	@mkdir -p build
	@if [ -f $(BPF_SRC) ]; then \
	  clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c $(BPF_SRC) -o $@; \
	else echo "bpf: no datapath source yet"; touch $@; fi

# The wheel, with the compiled BPF object inside (setup.py): dist/netloom-<version>-py3-none-any.whl.
# build/lib is setuptools' staging area: emptied first, so nothing stale reaches the wheel.
dist: bpf | venv
	rm -rf build/lib build/bdist.*
	$(VPY) -m pip wheel -q --no-deps -w dist .

clean:
	rm -rf build dist $(VENV)
