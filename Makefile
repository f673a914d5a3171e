# Two entry points for a new machine: `make lab` and `make test`.
# Both create .venv on first use and install what they need, Debian packages included
# where the machine allows (root + apt-get).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test install system-deps bench clean

$(STAMP): setup.cfg pyproject.toml $(wildcard kernels/*/kernel.json)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	# Editable installs skip data_files: enable the server extension as a wheel install would.
	install -D -m 644 jupyter-config/jupyter_server_config.d/jupyter_bai.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/jupyter_bai.json
	for k in kernels/*/; do $(VENV)/bin/jupyter kernelspec install --sys-prefix --replace "$$k" >/dev/null; done
	touch $(STAMP)

install: $(STAMP) $(SYSTEM_STAMP)

# bubblewrap sandboxes the local runtime; without it sessions run as plain processes.
$(SYSTEM_STAMP):
	@mkdir -p $(VENV)
	@if ! command -v bwrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing bubblewrap"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null; \
	  else \
	    echo "note: bubblewrap is not installed and cannot be installed here; sessions will run unsandboxed"; \
	  fi; \
	fi
	@touch $(SYSTEM_STAMP)

lab: install
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/quickstart.ipynb

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/session_start.py

clean:
	rm -rf $(VENV) build *.egg-info
