# Two entry points for a new machine: `make lab` and `make test`.
# Both create .venv on first use and install what they need, Debian packages included
# where the machine allows (root + apt-get).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
NODE_STAMP := $(VENV)/.node
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test install system-deps docker-up labextension ui-deps bench bench-backendai clean

$(STAMP): setup.cfg setup.py pyproject.toml $(wildcard kernels/*/kernel.json) | $(NODE_STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	# Editable installs skip data_files: enable the server extension as a wheel install would.
	install -D -m 644 jupyter-config/jupyter_server_config.d/jupyter_bai.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/jupyter_bai.json
	# Session kernelspecs (kernels/*): the GPU ones only where this node has GPUs (or fake ones).
	$(VENV)/bin/jupyter bai kernelspec install-shipped --sys-prefix
	touch $(STAMP)

install: $(STAMP) $(SYSTEM_STAMP) labextension

# The sidebar (labextension/, TypeScript): npm ci + build only when its sources changed
# (labextension/build.py; the same step runs inside `pip install .`), linked into the venv
# as `jupyter labextension develop` would.
LABEXT_LINK := $(VENV)/share/jupyter/labextensions/jupyter-bai
labextension: $(STAMP)
	$(PY) labextension/build.py
	@if [ ! -L $(LABEXT_LINK) ]; then rm -rf $(LABEXT_LINK); mkdir -p $(dir $(LABEXT_LINK)); \
	  ln -s $(CURDIR)/jupyter_bai/labextension $(LABEXT_LINK); fi

# Node.js and npm build the extension: the machine's, else Debian's (as root).
$(NODE_STAMP):
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing nodejs and npm"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >/dev/null; \
	  else echo "error: the JupyterLab extension needs Node.js and npm on PATH"; exit 1; fi; \
	fi
	@mkdir -p $(VENV) && touch $(NODE_STAMP)

# The UI tests drive Debian's Chromium (no browser download); with CI=true they never skip.
CHROMIUM_STAMP := $(VENV)/.chromium
ui-deps: $(CHROMIUM_STAMP)
$(CHROMIUM_STAMP):
	@mkdir -p $(VENV)
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else \
	    echo "note: chromium is not installed and cannot be installed here; the UI tests skip (and fail when CI=true)"; \
	  fi; \
	fi
	@touch $(CHROMIUM_STAMP)

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
	@# Debian's docker.io runs the docker runtime's sessions (and its tests).
	@if ! command -v dockerd >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing docker.io"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io) >/dev/null; \
	  else \
	    echo "note: docker.io is not installed and cannot be installed here; the docker runtime is off"; \
	  fi; \
	fi
	@touch $(SYSTEM_STAMP)

# A Docker daemon for the docker runtime: use one that answers, else start dockerd (as root)
# in the background, logging to $(VENV)/dockerd.log; it is left running. Then build the
# small test image locally (no registry; tests/docker_image.py, well under a second).
docker-up: install
	@if command -v docker >/dev/null && ! docker info >/dev/null 2>&1 \
	    && command -v dockerd >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "starting dockerd (log: $(VENV)/dockerd.log)"; \
	  setsid nohup dockerd >$(VENV)/dockerd.log 2>&1 < /dev/null & \
	  for i in $$(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done; \
	  docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -5 $(VENV)/dockerd.log; }; \
	fi
	@if docker info >/dev/null 2>&1; then $(PY) tests/docker_image.py; \
	else echo "note: no Docker daemon answers; the Docker tests skip (and fail when CI=true)"; fi

lab: install docker-up
	@$(VENV)/bin/jupyter bai kernelspec install-shipped --sys-prefix
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/quickstart.ipynb

test: install docker-up ui-deps
	cd labextension && BAI_PYTHON=$(CURDIR)/$(PY) npm test
	$(PY) -m pytest -q -p no:cacheprovider

bench: install docker-up
	$(PY) bench/session_start.py
	$(PY) bench/pipeline.py
	$(PY) bench/docker_start.py
	$(PY) bench/kernel_start.py
	$(PY) bench/assistant_eval.py
	$(PY) bench/loop_lag.py
	$(PY) bench/client_overhead.py
	$(PY) bench/metrics_cost.py

# jupyter-bai against the official SDK on a real Backend.AI 23.09 halfstack (started if none
# answers on 127.0.0.1:8081; root and Docker needed).
bench-backendai: install docker-up
	$(PY) bench/backendai.py

clean:
	rm -rf $(VENV) build *.egg-info jupyter_bai/labextension labextension/node_modules labextension/lib \
	  labextension/tsconfig.tsbuildinfo labextension/.build-stamp
