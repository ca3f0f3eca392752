# safewatch developer tasks. `make install` once, then `make run`, `make audit` or `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= examples/site.yaml
RULES ?= examples/rules
# The demo clip, by catalogue name: downloaded (sha256-checked) on first use, like the models.
VIDEO ?= construction_cctv
# Wall-clock time of the demo clip's first frame, as its camera's on-screen clock shows it; other
# footage is dated by its own creation time unless START= is given.
START ?= $(if $(filter construction_cctv,$(VIDEO)),2017-02-22T13:07:16)

.PHONY: install run audit test check lint typecheck bench bench-runtime

# A stock Debian/Ubuntu python3 cannot make virtual environments until python3-venv is installed.
$(BIN)/safewatch: pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: safewatch needs Python 3.11 or newer as '$(PY)' (make PY=python3.12 ...)" >&2; \
	  exit 1; }
	@$(PY) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
	  echo "error: '$(PY) -m venv' failed: install Python's venv module, on Debian/Ubuntu with" >&2; \
	  echo "  sudo apt install python3-venv   (or python3.X-venv matching '$(PY) --version')" >&2; \
	  exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/safewatch

# The live server on the example site (its camera is the clip, looped as a live camera).
# More serve options through ARGS, e.g. make run ARGS="--port 8090".
run: install
	$(BIN)/safewatch serve --config $(CONFIG) --rules $(RULES) $(ARGS)

# A one-off audit of the example clip -> audit-out/.
audit: install
	$(BIN)/safewatch audit $(VIDEO) --config $(CONFIG) --rules $(RULES) --out audit-out \
	  $(if $(START),--start $(START))

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

# Each benchmark prints its table and writes JSON to bench/results/ (needs ../shared/assets).
bench: install
	$(BIN)/python -m bench.accuracy
	$(BIN)/python -m bench.speed
	$(BIN)/python -m bench.speed_decode
	$(BIN)/python -m bench.tracking
	$(BIN)/python -m bench.evidence
	$(BIN)/python -m bench.alerts
	$(BIN)/python -m bench.backtest

# The live server under load on real RTSP cameras (about 20 minutes; needs the GStreamer RTSP
# server); the 1-hour soak is separate: python -m bench.runtime soak --seconds 3600.
bench-runtime: install
	$(BIN)/python -m bench.runtime scaling
	$(BIN)/python -m bench.runtime decode
	$(BIN)/python -m bench.runtime latency
	$(BIN)/python -m bench.runtime overload
	$(BIN)/python -m bench.runtime baseline
	$(BIN)/python -m bench.runtime tiling
	$(BIN)/python -m bench.recording
