# One-command entry points; `demo` and `test` create the virtualenv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup browser wrk demo demo-loop test lint bench bench-automl clean aws-node aws-validate test-aws screenshots reliability

$(BIN)/automlops: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/automlops

setup: $(BIN)/automlops

demo: setup
	$(BIN)/automlops demo

# The closed loop: serve, send traffic, drift it, send labels, the monitor flags it, the policy
# retrains and the gate promotes a new champion (ALERT_WEBHOOK=url also POSTs the alerts).
demo-loop: setup
	$(BIN)/automlops demo --loop $(if $(ALERT_WEBHOOK),--alert-webhook $(ALERT_WEBHOOK))

# Headless Chromium for the report.html test: Debian's package, installed once (a no-op when
# present). Where it cannot be installed the note says so and the browser tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  ($$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium) || \
	  echo "note: chromium could not be installed; the browser tests will skip"; }

# Test processes side by side: two, as many as the 2-core machine the suite is sized for (a
# container's CPU count can be its host's, not its quota; more workers also hold more memory).
TEST_WORKERS ?= 2

test: setup browser aws-validate
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

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
# prod is packaged with a customer-managed KMS key and an alarm address, so both sides of the
# template's conditions are linted; then the bootstrap stack, the GitHub workflows and their
# scripts (actionlint also runs shellcheck on the workflows' inline scripts when it is installed).
AWS_VALIDATE_KMS := arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000
aws-validate: setup aws-node
	cd $(SLS_DIR) && $(SLS_ENV) ./node_modules/.bin/serverless package --stage dev \
	  --package .package/dev
	cd $(SLS_DIR) && $(SLS_ENV) ./node_modules/.bin/serverless package --stage prod \
	  --package .package/prod --param="kmsKey=$(AWS_VALIDATE_KMS)" \
	  --param="alarmEmail=alarms@example.com"
	$(BIN)/cfn-lint --ignore-checks W3005 -- \
	  $(SLS_DIR)/.package/dev/cloudformation-template-update-stack.json \
	  $(SLS_DIR)/.package/prod/cloudformation-template-update-stack.json
	$(BIN)/cfn-lint -- $(SLS_DIR)/bootstrap.yml
	$(BIN)/actionlint .github/workflows/*.yml
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck .github/scripts/*.sh; \
	else echo "note: shellcheck (Debian package) not installed: .github/scripts/*.sh unchecked"; fi

test-aws: setup aws-node
	$(BIN)/pytest tests/aws

# The dashboard's screenshots in docs/ (shown in the README), taken in Debian's chromium.
screenshots: setup browser
	$(BIN)/python docs/screenshots.py

lint: setup
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# FLAML gets a virtualenv of its own: it pins older learner versions than ours.
FLAML_VENV := .venv-flaml
$(FLAML_VENV)/bin/python:
	$(PYTHON) -m venv $(FLAML_VENV)
	$(FLAML_VENV)/bin/pip install --quiet 'flaml[automl]>=2.3,<3' pyarrow pandas

# AutoGluon-Tabular too, with LightGBM, XGBoost and CatBoost and without torch (no neural nets).
AUTOGLUON_VENV := .venv-autogluon
$(AUTOGLUON_VENV)/bin/python:
	$(PYTHON) -m venv $(AUTOGLUON_VENV)
	$(AUTOGLUON_VENV)/bin/pip install --quiet --upgrade pip
	$(AUTOGLUON_VENV)/bin/pip install --quiet 'autogluon.tabular[lightgbm,xgboost,catboost]>=1.4,<2' \
	  pyarrow pandas

# The AutoML table alone (ours, FLAML, AutoGluon): writes docs/benchmarks-automl.md.
bench-automl: setup $(FLAML_VENV)/bin/python $(AUTOGLUON_VENV)/bin/python
	$(BIN)/python bench/automl_table.py

# MLflow, the serving benchmark's baseline, also lives apart: only its model server is used.
MLFLOW_VENV := .venv-mlflow
$(MLFLOW_VENV)/bin/mlflow:
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install --quiet 'mlflow>=3,<4' xgboost pandas pyarrow

# wrk, the serving benchmark's load generator: Debian's package, installed once.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk; }

bench: setup wrk $(FLAML_VENV)/bin/python $(AUTOGLUON_VENV)/bin/python $(MLFLOW_VENV)/bin/mlflow
	$(BIN)/python bench/run.py

# The reliability suite in its long form (a 2 GB upload, 10,000-request load, longer fuzzing);
# the figures the tests record become docs/reliability.md, also when a test fails.
RELIABILITY_OUT := bench/out/reliability
reliability: setup
	rm -rf $(RELIABILITY_OUT)
	AUTOMLOPS_RELIABILITY_HEAVY=1 AUTOMLOPS_RELIABILITY_OUT=$(RELIABILITY_OUT) \
	  $(BIN)/pytest -p no:cacheprovider tests/reliability; status=$$?; \
	  $(BIN)/python bench/reliability_report.py $(RELIABILITY_OUT) docs/reliability.md && \
	  exit $$status

clean:
	rm -rf $(VENV) $(FLAML_VENV) $(AUTOGLUON_VENV) $(MLFLOW_VENV) .automlops .pytest_cache $(SLS_DIR)/.serverless $(SLS_DIR)/.package
