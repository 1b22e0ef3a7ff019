# Two entry points a fresh machine needs: `make webui` and `make test`.
PY := .venv/bin/python

.PHONY: setup webui test test-fast bench doctor

setup:
	@bash scripts/setup_env.sh

webui: setup
	$(PY) start.py webui $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

doctor: setup
	$(PY) start.py doctor

bench: setup
	$(PY) start.py bench serve $(ARGS)
