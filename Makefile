# galdust: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OUT    ?= demo_out

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	$(VENV)/bin/galdust demo --out $(OUT) --overwrite

test: install
	$(PY) -m pytest

bench: install
	$(PY) bench/bench_simulate.py
	$(PY) bench/bench_fit.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
