# nmtc developer entry points. `make demo` and `make test` create the
# environment (.venv, Python 3.10) on first use; see README.md.
PYTHON ?= python3.10
VENV   := .venv
STAMP  := $(VENV)/.nmtc-installed
PIP    := $(VENV)/bin/python -m pip

.PHONY: demo test env clean-env

env: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "nmtc needs $(PYTHON) (Lava supports only Python 3.10); set PYTHON=/path/to/python3.10" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==24.2
	$(PIP) install --quiet -c constraints.txt -r requirements.txt
	@# lava-dl and sinabs declare broken dependencies (argparse shadowing, samna stub):
	@# install them alone; requirements.txt lists what they really need. sanafe (the
	@# SANA-FE referee, a compiled wheel) needs nothing else, so it goes here too, as do
	@# the NeuroBench referee and snnTorch (NeuroBench declares torchaudio, tonic and numba,
	@# which its metrics do not import), and norse (snnTorch and norse write the NIR files
	@# the interop tests compare with their own simulations; their needs are all listed),
	@# and spikingjelly (the published Spikformer's neuron, producer of a loading test).
	$(PIP) install --quiet --no-deps -c constraints.txt lava-dl sinabs sanafe neurobench snntorch norse spikingjelly
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/nmtc demo

# The suite as installed, then again with Lava and sinabs unimportable: the core
# must pass without them and tests that need them skip, naming the package.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q
	NMTC_HIDE_VENDORS=lava,sinabs PYTHONPATH="$(CURDIR)/tests/_hide_vendors$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(VENV)/bin/python -m pytest -q

clean-env:
	rm -rf $(VENV)
