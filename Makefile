# The two commands a newcomer runs: `make up` and `make test`.
# Both install what they need on a fresh Debian machine first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBS := nftables iproute2 curl dnsutils conntrack procps nginx-light wrk
NAME ?= skiff
NODES ?= 3

.PHONY: up down test unit e2e lint deps debs venv bench clean

up: deps
	$(VENV)/bin/skiff up --name $(NAME) --nodes $(NODES)

down: venv
	$(VENV)/bin/skiff down --name $(NAME)

test: deps
	$(VENV)/bin/ruff check skiff tests bench
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

unit: venv
	$(VENV)/bin/pytest -q tests/unit

e2e: deps
	$(VENV)/bin/pytest -q tests/e2e

lint: venv
	$(VENV)/bin/ruff check skiff tests bench

bench: deps
	for b in bench/*.py; do $(PY) $$b || exit 1; done

deps: debs venv

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info
