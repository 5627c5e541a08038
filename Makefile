# Two commands on a fresh machine: `make train` and `make test`. Each creates .venv when absent and
# installs the project into it once (again only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.attnlab-installed
# Extra arguments for pytest / train.py, e.g. `make test ARGS="-k attention"`, `make train ARGS="attention=dot"`.
ARGS ?=

.PHONY: install train test test-slow test-all lint bench clean-logs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The default experiment (translation, generated corpus, additive attention, CPU), W&B offline.
train: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) train.py $(ARGS)

# The default (fast) test suite; `make test-slow` runs the long ones, `make test-all` both.
test: $(STAMP)
	WANDB_MODE=offline $(PY) -m pytest -m "not slow" $(ARGS)

test-slow: $(STAMP)
	WANDB_MODE=offline $(PY) -m pytest -m slow $(ARGS)

test-all: $(STAMP)
	WANDB_MODE=offline $(PY) -m pytest $(ARGS)

# Lint, format check and type check, with the versions pinned in the dev extra (the same three as
# .pre-commit-config.yaml). All three run, so one call shows every finding; it fails if any of them does.
# `ruff format .` and `ruff check --fix .` repair most of what it reports.
lint: $(STAMP)
	@status=0; \
	$(PY) -m ruff check . || status=1; \
	$(PY) -m ruff format --check . || status=1; \
	$(PY) -m mypy || status=1; \
	exit $$status

bench: $(STAMP)
	$(PY) scripts/bench.py $(ARGS)

clean-logs:
	rm -rf logs/train logs/eval logs/wandb
