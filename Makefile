# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGIN_TESTS := $(wildcard plugins/*/tests)
SETUP_INPUTS := pyproject.toml constraints.txt scripts/setup.sh debian-packages.txt $(wildcard plugins/*/pyproject.toml) $(wildcard plugins/*/debian-packages.txt) $(wildcard plugins/*/pip-no-deps.txt)

.PHONY: setup demo demo-image test clean

$(STAMP): $(SETUP_INPUTS)
	bash scripts/setup.sh
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/python examples/demo.py

demo-image: setup
	$(BIN)/python examples/demo_image.py

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests $(PLUGIN_TESTS) -q -p no:cacheprovider --timeout=900

clean:
	rm -rf $(VENV) outputs runs
