# safewatch developer tasks. `make install` once, then `make run`, `make audit` or `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= examples/site.yaml
RULES ?= examples/rules
VIDEO ?= ../shared/assets/video/construction_cctv_640x352_24s.mp4

.PHONY: install run audit test check lint typecheck bench bench-runtime

$(BIN)/safewatch: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/safewatch

# The live server on the example site (its camera is the clip, looped as a live camera).
run: install
	$(BIN)/safewatch serve --config $(CONFIG) --rules $(RULES)

# A one-off audit of the example clip -> audit-out/.
audit: install
	$(BIN)/safewatch audit $(VIDEO) --config $(CONFIG) --rules $(RULES) --out audit-out

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

# The live server under load on real RTSP cameras (about 20 minutes; needs the GStreamer RTSP
# server); the 1-hour soak is separate: python -m bench.runtime soak --seconds 3600.
bench-runtime: install
	$(BIN)/python -m bench.runtime scaling
	$(BIN)/python -m bench.runtime decode
	$(BIN)/python -m bench.runtime latency
	$(BIN)/python -m bench.runtime overload
	$(BIN)/python -m bench.runtime baseline
	$(BIN)/python -m bench.runtime tiling
