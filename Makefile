# The two commands of the README: `make demo` (the main job) and `make test` (every check).
# Both install what they need first (scripts/setup.sh is idempotent and resumes).
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: demo test setup lint unit help
help:
	@echo "make demo   set up, then run the end-to-end demo (prescale demo)"
	@echo "make test   set up, then run lint, type checks, import contracts and all tests"

demo:
	scripts/setup.sh
	$(VENV)/prescale demo $(DEMO_ARGS)

test:
	scripts/setup.sh
	scripts/check.sh

setup:
	scripts/setup.sh

lint:
	scripts/check.sh --lint-only
