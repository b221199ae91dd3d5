# Set-up and entry points. `make demo` and `make test` each do all the set-up on a fresh machine:
# the virtual environment at .venv, the pinned requirements (torch 2.13.0: the CPU wheel), the
# project itself (editable), and, when run as root, the Debian packages the GUI tests need.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 \
	libxcb-render-util0 libxcb-shape0 libxkbcommon-x11-0 libgl1 libegl1 libusb-1.0-0
XVFB := xvfb-run -a -s "-screen 0 1280x1024x24"
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint bench system-deps venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Debian packages for Qt/OpenGL under Xvfb and for importing open3d (libusb).
system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "warning: missing Debian packages (install them as root): $$missing" >&2; \
	fi

demo: $(STAMP) system-deps
	$(VENV)/bin/v2d demo --out outputs/demo

# pytest exits 5 when it collects no test: that is a failure of the suite, said plainly.
test: $(STAMP) system-deps
	@status=0; \
	if command -v xvfb-run >/dev/null; then \
		$(XVFB) $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	else \
		echo "xvfb-run missing: GUI tests will skip" >&2; \
		$(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	fi; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

# The quick tests for the edit loop: neither the slow ones nor those that need an X server.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not gui" $(PYTEST_ARGS)

# Style and import order (ruff), annotations (mypy) and the layers' import contract (import-linter).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP) system-deps
	$(VENV)/bin/v2d bench

clean:
	rm -rf $(VENV) outputs .pytest_cache
