# The commands the README gives. Each installs what it needs first.
#   make setup   Debian's zookeeper package and a .venv with kazoo
#   make demo    the loopback ensemble at 127.0.10.101-103, then a short tour
#                ($ZKDEMO_IPS and $ZKDEMO_STATE_DIR put it elsewhere)
#   make test    the test suite, against ensembles of its own (TESTS=... narrows it,
#                JOBS=N sets how many files run at once)
#   make bench   failover, lock handover, watch latency, cold start and scale, on an
#                ensemble of its own;
#                as root, also the lab's and the VMs' memory and timings
#                (BENCH_ONLY=lab,vms runs only the steps named)
#   make down    stop the loopback ensemble
#   make lab     zoo1-zoo3 as namespace machines at 10.0.10.101-103 (root; provision/lab.py)
#   make lab-down  remove the lab and everything it made
#   make chaos   a randomized fault run in the lab, checked (root; provision/chaos.py);
#                SEED=N repeats a schedule, MINUTES=M sets its length (default 2)

PYTHON ?= python3
VENV := .venv
CLUSTER := $(PYTHON) provision/local-cluster.py

SEED ?=
MINUTES ?= 2

.PHONY: setup host test-setup demo down test bench lab lab-down chaos

setup: host $(VENV)/installed

host:
	bash provision/setup-host.sh

$(VENV)/installed: requirements.txt tests/requirements.txt | host
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -r tests/requirements.txt
	touch $@

test-setup: setup
	bash provision/setup-host.sh --test-tools

demo: setup
	$(CLUSTER) up
	bash provision/tour.sh

down:
	$(CLUSTER) down

# TESTS narrows the run as pytest's own arguments do: TESTS="tests/test_lab.py -k partition".
# The files run on JOBS workers at once, longest first (JOBS=0: one process, in order):
# most of the suite waits on timers (sessions, elections, VMs booting), not on the CPU.
TESTS ?= tests
JOBS ?= 3

test: test-setup
	$(VENV)/bin/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder \
	    --max-worker-restart 0 $(TESTS)

bench: setup
	$(VENV)/bin/python tests/bench.py

lab:
	bash provision/setup-host.sh --lab
	$(PYTHON) provision/lab.py up

lab-down:
	$(PYTHON) provision/lab.py down

chaos:
	bash provision/setup-host.sh --lab
	$(PYTHON) provision/chaos.py $(if $(SEED),--seed $(SEED)) --minutes $(MINUTES)
