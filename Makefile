# Fechatter: `make run` for the demo, `make test` for the suite. Both install what is missing.

PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/python -m pip --disable-pip-version-check
# apt-get needs root; sudo only when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv venv-test run test bench faults cluster cluster-test

venv: $(VENV)/.installed-app

venv-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: packages are installed again only when pyproject.toml changes.
$(VENV)/.installed-app: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-app
	$(PIP) install -q '.[test]'
	touch $@

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
/usr/bin/chromium:
	$(SUDO) apt-get -q update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -q install -y chromium fonts-noto-color-emoji

# The load-balancer tests and `make cluster` run Debian's haproxy in front of the roles.
/usr/sbin/haproxy:
	$(SUDO) apt-get -q update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -q install -y haproxy

# A 3-node NATS cluster, nx-27017, 2 api, 2 notify and haproxy (docs/deploy/haproxy.cfg) on this machine,
# to try by hand at http://127.0.0.1:8080 (CLUSTER_ARGS="--port 9000"); Ctrl-C stops all of them.
cluster: venv /usr/sbin/haproxy
	$(VENV)/bin/python -m bench.cluster $(CLUSTER_ARGS)

run: venv
	$(VENV)/bin/python main.py --role=all --seed-demo

# The import contracts of pyproject.toml [tool.importlinter] first: a broken layering fails the build.
# pytest exits 5 when it collected no tests: say so plainly instead of failing.
# Two workers (pytest-xdist), each with its own nats-server and MongoDB-wire server; PYTEST_WORKERS=0 runs in one process.
# worksteal: a worker that runs out takes pending tests from the other, so no long test is left queued behind it.
PYTEST_WORKERS ?= 2
test: venv-test /usr/bin/chromium /usr/sbin/haproxy
	$(VENV)/bin/lint-imports
	@$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests"; status=0; fi; \
	exit $$status

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-app
	$(PIP) install -q '.[bench]'
	touch $@

# A few minutes with modest defaults; BENCH_ARGS scales up (see `.venv/bin/python -m bench --help`).
bench: $(VENV)/.installed-bench
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

# The 3-node NATS cluster scenarios (a leader and a follower SIGKILLed under keyed sends), one at a time:
# their timing bounds need the machine to themselves, so `make test` leaves them out.
cluster-test: venv-test
	$(VENV)/bin/pytest -p no:xdist -m cluster -s $(PYTEST_ARGS)

# The fault scenarios alone (about 2 minutes; `make test` runs them too), with their counts printed;
# the counts also land in test-artifacts/faults.json.
faults: venv-test
	$(VENV)/bin/pytest -p no:xdist -m faults -s $(PYTEST_ARGS)
