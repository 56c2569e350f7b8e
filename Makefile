# pgm_rl: `make demo` sets up .venv and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The first Python >= 3.12 found: pyenv picks 3.12 through .python-version; explicit names next.
BOOTSTRAP_PYTHON ?= $(shell for p in python3 python3.13 python3.12 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	command -v $$p; break; fi; done)

.PHONY: demo test test-fast test-slow lint bench bench-deps venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(BOOTSTRAP_PYTHON)" ]; then \
		echo "error: pgm_rl needs Python >= 3.12 (ArviZ 1.x and current JAX require it); found only: $$(python3 --version 2>&1)." >&2; \
		echo "       Install Python 3.12+ (e.g. 'pyenv install 3.12') or run 'make BOOTSTRAP_PYTHON=/path/to/python3.12 ...'." >&2; \
		exit 1; fi
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
		echo "removing $(VENV): it was made with a Python older than 3.12"; rm -rf $(VENV); fi
	@echo "setting up $(VENV) with $(BOOTSTRAP_PYTHON) ($$($(BOOTSTRAP_PYTHON) --version))"
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,gymnasium]'
	@touch $@

demo: venv
	$(PY) examples/quickstart.py
	$(VENV)/bin/pgm-rl exact --grid notebook --horizon 100 --beta 100
	$(PY) examples/demo.py --out report
	$(PY) examples/your_own_model.py --out report
	$(PY) examples/pendulum_swing_up.py --out report/pendulum_swing_up.png
	$(VENV)/bin/pgm-rl fit --grid notebook --horizon 100 --beta 1 --steps 200 --no-progress --out report/notebook_policy.nc --plots report/fit --overwrite
	$(VENV)/bin/pgm-rl smc --grid notebook --horizon 100 --beta 1 --proposal report/notebook_policy.nc --runs 3
	$(PY) examples/forward_vs_reverse.py --out report
	# guided Particle Gibbs at the notebook's setting, then the bootstrap one (flagged by the CLI's warnings; exits 0)
	$(VENV)/bin/pgm-rl sample --kernel guided-particle-gibbs --grid notebook --horizon 100 --beta 1 --chains 4 --warmup 100 --samples 300 --no-progress
	$(VENV)/bin/pgm-rl sample --kernel particle-gibbs --grid notebook --horizon 100 --beta 1 --chains 4 --warmup 100 --samples 300 --no-progress
	$(VENV)/bin/pgm-rl exact --env FrozenLake-v1 --env-kwargs is_slippery=true --horizon 20 --beta 5
	$(PY) examples/frozen_lake.py --out report
	$(PY) examples/irl_recovery.py --out report

# Default tests (cheapest XLA code generation: they mostly compile), then the statistical tests
# marked slow (optimised code: they mostly run), on 2 worker processes (pytest-xdist; the default
# tests a file per worker, so a file's tests share their compiled programs: 417 s -> 329 s cold);
# pytest's "no tests collected" (5) is not a failure.
PYTEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile || [ $$? -eq 5 ]
	PGM_RL_TEST_OPTIMISE=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow || [ $$? -eq 5 ]

test-fast: venv
	$(PY) -m pytest -q -x

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Every benchmark in benchmarks/, in quick mode (docs/benchmarks.md lists them). Pictures go to
# bench-report/: report/ is the demo's, which refuses a folder it did not make. bench_adapter.py
# compares with BlackJAX where it is installed (make bench-deps), and says so where it is not.
bench: venv
	$(PY) benchmarks/bench_exact.py --quick
	$(PY) benchmarks/bench_kernels.py --quick
	$(PY) benchmarks/bench_adapter.py --quick
	$(PY) benchmarks/bench_hard.py --quick
	mkdir -p bench-report && $(PY) benchmarks/bench_irl.py --quick --out bench-report/irl_sbc_ecdf.png
	$(PY) benchmarks/bench_stochastic.py --quick
	$(PY) benchmarks/bench_variational.py --quick
	$(PY) benchmarks/bench_control.py --quick
	$(PY) benchmarks/bench_factor.py --quick
	$(PY) benchmarks/bench_sharded.py --quick
	$(PY) benchmarks/bench_chains.py --quick
	$(PY) benchmarks/bench_large.py --quick
	$(PY) benchmarks/bench_gpu.py --quick

# What the benchmarks compare against but pgm_rl does not need: BlackJAX (1.7.1 needs jax >= 0.9).
bench-deps: venv
	$(PY) -m pip install --quiet 'blackjax>=1.7'

clean:
	rm -rf $(VENV) report bench-report .pytest_cache
