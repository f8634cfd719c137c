# Single entry point. `make demo` and `make test` each install what is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APT_PKGS := bison flex libfftw3-dev pkg-config
SHARED ?= $(abspath ../shared)
export NUSKYBGD_AUXIL ?= $(SHARED)/nuskybgd-auxil
export NUSKYBGD_APEC_TEMPLATE ?= $(SHARED)/apec/nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt
export NUSKYBGD_SHARED ?= $(SHARED)
export MPLBACKEND ?= Agg
DEMO_DIR ?= demo_out

.PHONY: sysdeps venv demo lint test test-fast bench clean

sysdeps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | sysdeps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: sysdeps $(VENV)/.installed

demo: venv
	$(VENV)/bin/nuskybgd demo $(DEMO_DIR) --clobber

lint: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check nuskybgd tests benchmarks

# Two pytest workers (one per core of the CI machine); tests sharing a
# module-scoped simulation stay on one worker (--dist loadscope).
PYTEST_WORKERS ?= 2

test: lint
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadscope

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
