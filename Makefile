# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
FLASK  := $(VENV)/bin/flask --app app
PORT   ?= 5000
export PORT

.PHONY: run test soak lint format bench clean-mail

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

# With no SECRET_KEY set, a random one is made once and kept in instance/.
run: $(VENV)/.runtime
	@mkdir -p instance
	@[ -s instance/secret_key ] || $(PY) -c "import secrets; print(secrets.token_urlsafe(48))" > instance/secret_key
	SECRET_KEY="$${SECRET_KEY:-$$(cat instance/secret_key)}" $(FLASK) db upgrade
	SECRET_KEY="$${SECRET_KEY:-$$(cat instance/secret_key)}" $(FLASK) serve --port $(PORT)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	@# Links to articles not written yet are warnings; a misspelt slug fails.
	SECRET_KEY=content-check $(FLASK) content check
	@# The slowest tests are listed at the end: the suite's time is a bar too.
	$(PY) -m pytest -m "not soak" --durations=25 $(PYTEST_ARGS)

# Long runs against real processes (the 2,000-signup storm), a few minutes.
soak: $(VENV)/.dev
	$(PY) -m pytest tests/soak -m soak $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(PY) -m bench $(BENCH_ARGS)

clean-mail:
	rm -rf instance/mail
