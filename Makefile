# The four commands of the README. Each installs what is missing first (scripts/bootstrap.sh).
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: db run test stop bootstrap

bootstrap:
	@scripts/bootstrap.sh

db: bootstrap
	@$(PY) -m scripts.dbup

run: db
	@$(PY) -m scripts.run start

test: db
	@$(PY) -m pytest -q $(PYTEST_ARGS)

stop:
	@if [ -x $(PY) ]; then $(PY) -m scripts.run stop; $(PY) -m scripts.embedded stop; fi
