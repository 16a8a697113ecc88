# The two set-up commands of the README:
#   make run    install everything and run the main job
#               (`meltano run tap-bitbucket target-duckdb`, against the bundled emulator
#               when no Bitbucket credentials are configured), then print a DuckDB summary,
#               build the analytics models (dbt-duckdb:build) and write output/report.html
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Meltano lives in a venv of its own (its dependencies would fight the tap's); it installs
# the tap and the loaders into .meltano/ (one venv per plugin) from meltano.yml.
MELTANO_VERSION := 4.4.1
MELTANO_VENV ?= .meltano-venv
MELTANO := $(MELTANO_VENV)/bin/meltano
MELTANO_STAMP := $(MELTANO_VENV)/.installed-$(MELTANO_VERSION)
PLUGINS_STAMP := .meltano/.plugins-installed
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: run test test-unit fuzz chromium lint types install meltano-install readme dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(MELTANO_STAMP):
	rm -rf $(MELTANO_VENV)
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(MELTANO_VENV)/bin/python -m pip install --quiet "meltano==$(MELTANO_VERSION)"
	touch $(MELTANO_STAMP)

$(PLUGINS_STAMP): $(MELTANO_STAMP) meltano.yml pyproject.toml
	$(MELTANO) --log-level=warning install
	mkdir -p output
	touch $(PLUGINS_STAMP)

install: $(STAMP) $(PLUGINS_STAMP)

meltano-install: $(PLUGINS_STAMP)

run: $(STAMP) $(PLUGINS_STAMP)
	$(BIN)/python -m scripts.demo

# The Meltano end-to-end tests (real `meltano run` into DuckDB, JSONL and PostgreSQL, and
# the shard runs) keep both cores busy with meltano, tap and loader processes: they run
# after the rest, so they never skew its timing-sensitive tests. Both phases always run.
E2E_TESTS := tests/test_meltano_e2e.py tests/test_shards.py tests/test_scheduling_example.py \
	tests/test_analytics.py tests/test_report_browser.py

# tests/test_report_browser.py opens output/report.html in a real headless Chromium, from
# Debian's packages: installed here when missing, so the test never has to be skipped.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; }

test: $(STAMP) $(PLUGINS_STAMP) chromium
	$(BIN)/ruff check tap_bitbucket tests scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 -q $(addprefix --ignore=,$(E2E_TESTS)); first=$$?; \
	$(BIN)/python -m pytest -n 2 -q $(E2E_TESTS); second=$$?; \
	exit $$(( first != 0 ? first : second ))

# The fast tier alone: in-process unit tests (settings, scope, bookmarks, pages, streams
# status mapping and transforms, auth, the CLI's error mapping, the SDK-API scan), no
# subprocess and no emulator server; under 20 s. `make test` runs them too.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m unit -q

# The property tests of bad input (tests/test_fuzz_*.py) with many more generated cases
# and a new seed per run: the nightly profile of tests/conftest.py. `make test` runs the
# same tests at the `ci` profile (fixed seed, few cases).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=nightly $(BIN)/python -m pytest -n 2 -q tests/test_fuzz_*.py

lint: $(STAMP)
	$(BIN)/ruff check tap_bitbucket tests scripts

types: $(STAMP)
	$(BIN)/mypy

# Regenerate the README's settings and streams tables (tests/test_readme.py checks them).
readme: $(STAMP)
	$(BIN)/python -m scripts.update_readme

# The release distributions (tests/test_wheel.py builds and checks them in `make test`;
# the release workflow publishes what this builds).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist
	$(BIN)/twine check --strict dist/*
	$(BIN)/check-wheel-contents dist/*.whl

clean:
	rm -rf dist $(VENV) $(MELTANO_VENV) .meltano .pytest_cache .mypy_cache .ruff_cache
