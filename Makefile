# One-command entry points; `demo` and `test` create the virtualenv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean aws-node aws-validate test-aws

$(BIN)/automlops: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/automlops

setup: $(BIN)/automlops

demo: setup
	$(BIN)/automlops demo

test: setup aws-validate
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest

# AWS deployment: the Serverless Framework v3 from the committed lock file, packaged offline
# (no credentials: image URIs are pinned by digest) and linted with cfn-lint.
SLS_DIR := deploy/aws
SLS_STAMP := $(SLS_DIR)/node_modules/.installed
SLS_ENV := SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off SLS_DEPRECATION_DISABLE='*'

$(SLS_STAMP): $(SLS_DIR)/package.json $(SLS_DIR)/package-lock.json
	cd $(SLS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(SLS_STAMP)

aws-node: $(SLS_STAMP)

# cfn-lint ignores W3005 only: the framework adds DependsOn beside GetAtt on the given roles.
aws-validate: setup aws-node
	cd $(SLS_DIR) && for stage in dev prod; do \
	  $(SLS_ENV) ./node_modules/.bin/serverless package --stage $$stage \
	    --package .package/$$stage || exit 1; \
	done
	$(BIN)/cfn-lint --ignore-checks W3005 -- \
	  $(SLS_DIR)/.package/dev/cloudformation-template-update-stack.json \
	  $(SLS_DIR)/.package/prod/cloudformation-template-update-stack.json

test-aws: setup aws-node
	$(BIN)/pytest tests/aws

lint: setup
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .automlops .pytest_cache $(SLS_DIR)/.serverless $(SLS_DIR)/.package
