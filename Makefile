# The verbs people type. Every target creates what it needs on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .tools/sam
CHECKOV_VENV := .tools/checkov
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
STAGE ?= dev
STACK ?= imgclf-$(STAGE)
# Deploys go to the AWS profile's region unless REGION is given; nothing here overrides it.
REGION ?=
# More sam deploy parameter overrides, e.g. PARAMS="AlarmEmail=ops@example.com RequireApiKey=true".
PARAMS ?=
# 1: sam build in the Lambda build containers (needs only Docker); 0: needs the functions' Python on PATH.
BUILD_IN_CONTAINER ?= 1
# The offline lint gates need some region to translate ARNs; they create nothing.
LINT_REGION := AWS_DEFAULT_REGION=us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv tools browser lint test test-fast local demo bench preflight deploy image-smoke lock clean

help:
	@echo "make demo    the whole pipeline on the embedded local stack (DEMO_DATA=path for your own images)"
	@echo "make test    lint gates and every test"
	@echo "make lint    ruff, bandit, cfn-lint, sam validate --lint, checkov"
	@echo "make local   the embedded local stack in the foreground"
	@echo "make bench   every benchmark under bench/"
	@echo "make preflight  check the AWS account and this machine before a deploy (STAGE=$(STAGE))"
	@echo "make deploy  preflight, sam build and sam deploy (STAGE=$(STAGE) STACK=$(STACK) REGION=... PARAMS=...)"

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	# The repository root on the venv's path: bench/*.py import the helpers of tests/support, as the tests do.
	echo "$(CURDIR)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/imgclf-repo.pth
	$(PY) -m pip check
	touch $@

tools: $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

browser:
	scripts/install-browser.sh

lint: venv tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/bandit --quiet -c pyproject.toml -r functions training_job
	$(VENV)/bin/hadolint functions/classifier/Dockerfile training_job/Dockerfile
	$(VENV)/bin/shellcheck scripts/*.sh .ci/run training_job/bin/train
	$(VENV)/bin/cfn-lint template.yaml
	$(LINT_REGION) $(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(LINT_REGION) $(PY) scripts/sam_transform.py --out build/template.transformed.json
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f build/template.transformed.json

test:
	$(MAKE) -j3 venv tools browser  # independent installs, side by side
	$(MAKE) lint
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow"

local: venv
	$(VENV)/bin/imgclf local

demo: venv
	$(VENV)/bin/imgclf demo $(if $(DEMO_DATA),--data $(DEMO_DATA)) $(DEMO_ARGS)

bench: venv
	@for b in $(filter-out bench/__init__.py,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

preflight: venv
	$(VENV)/bin/imgclf preflight --stage $(STAGE) --stack-name $(STACK) $(if $(REGION),--region $(REGION)) \
		$(if $(filter 0,$(BUILD_IN_CONTAINER)),--no-build-in-container) \
		$(if $(strip $(PARAMS)),--parameter-overrides $(PARAMS))

deploy: tools preflight
	$(SAM_VENV)/bin/sam build --template template.yaml $(if $(filter 1,$(BUILD_IN_CONTAINER)),--use-container,--no-use-container) \
		$(if $(REGION),--region $(REGION))
	$(SAM_VENV)/bin/sam deploy --config-env $(if $(filter prod,$(STAGE)),prod,default) --stack-name $(STACK) \
		$(if $(REGION),--region $(REGION)) --parameter-overrides Stage=$(STAGE) $(PARAMS)

image-smoke:
	scripts/image-smoke.sh

lock: venv
	$(PY) -m pip freeze --exclude-editable > requirements-lock.txt

clean:
	rm -rf build .aws-sam .pytest_cache .ruff_cache demo-output test-artifacts
