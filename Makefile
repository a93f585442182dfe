# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGIN_TESTS := $(wildcard plugins/*/tests) $(wildcard examples/plugins/*/tests)
SETUP_INPUTS := pyproject.toml constraints.txt scripts/setup.sh debian-packages.txt $(wildcard plugins/*/pyproject.toml) $(wildcard examples/plugins/*/pyproject.toml) $(wildcard plugins/*/debian-packages.txt) $(wildcard plugins/*/pip-no-deps.txt)

.PHONY: setup demo demo-image test docs clean

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

docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) outputs runs site
