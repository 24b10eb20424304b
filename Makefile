# The two set-up commands: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: install serve test lint lint-docker typecheck check-docker-install bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/modelzoo serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .

lint-docker: install
	$(BIN)/hadolint --no-color Dockerfile

typecheck: install
	$(BIN)/mypy

test: lint lint-docker typecheck
	$(BIN)/python -m pytest

# Opt-in (~20 s, resolves from PyPI): the Dockerfile's pip install, dry-run in a scratch venv.
check-docker-install: install
	PYTHON=$(BIN)/python bash deploy/check_dockerfile_commands.sh

bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python benchmarks/word2vec_vs_gensim.py --epochs 20 --with-autograd --with-adam

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
