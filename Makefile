# The four commands of the README. Each installs what is missing first (scripts/bootstrap.sh).
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: db run test stop bootstrap schema

bootstrap:
	@scripts/bootstrap.sh

db: bootstrap
	@$(PY) -m scripts.dbup

run: db
	@$(PY) -m scripts.run start

# Test files are spread over TEST_WORKERS processes (each with its own template database).
TEST_WORKERS ?= 2
test: db
	@$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Regenerates db/schema.snapshot (the applied catalogue tests compare against) after a schema change.
schema: db
	@$(PY) -m scripts.schema_snapshot --write

stop:
	@if [ -x $(PY) ]; then $(PY) -m scripts.run stop; $(PY) -m scripts.embedded stop; fi
