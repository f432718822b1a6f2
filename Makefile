# galdust: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OUT    ?= demo_out
# test processes: the suite is mostly XLA compilation, one core per process, so files run side by side
# (whole files per process, so a file's fixtures are built once); TEST_WORKERS=0 runs it in one process
TEST_WORKERS ?= 2

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: install
	$(VENV)/bin/galdust demo --out $(OUT) --overwrite

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(PY) bench/bench_simulate.py
	$(PY) bench/bench_fit.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
