PYTHON ?= python3
VENV ?= .venv
export PYTHON VENV

.PHONY: install run test lint format bench clean

# Set up .venv (and system packages when run as root).
install:
	sh deploy/bootstrap.sh

# The main job on embedded defaults.
run: install
	$(VENV)/bin/mamoru demo

# The whole test suite (pytest, ruff, mypy). PYTEST_ARGS="-k registry" narrows pytest.
test: install
	sh deploy/check.sh $(PYTEST_ARGS)

# Benchmarks at their default sizes (a few minutes each); see bench/*.py --help for larger runs.
bench: install
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(VENV)/bin/python bench/hashing_speed.py
	$(VENV)/bin/python bench/matching_speed.py
	$(VENV)/bin/python bench/matching_quality.py
	$(VENV)/bin/python bench/crawl_speed.py
	$(VENV)/bin/python bench/notices_speed.py
	$(VENV)/bin/python bench/notices_soak.py --trials 20

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
