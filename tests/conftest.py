"""Shared test set-up: float64 everywhere (float32 checks run in a subprocess), small problems."""

import os

# The default tests compile far more than they run: XLA's cheapest CPU code generation halves
# their time. The slow statistical tests run far more than they compile (optimised code runs
# their chains 3-4x faster): `make test` runs them with PGM_RL_TEST_OPTIMISE=1.
if os.environ.get("PGM_RL_TEST_OPTIMISE", "0") != "1":
    os.environ["XLA_FLAGS"] = " ".join(
        filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"])
    )

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
# Many tests compile the same programs (one kernel on one problem shape, built anew per MCMC run):
# JAX's persistent cache compiles each once per machine (keyed by the program and JAX version).
jax.config.update(
    "jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import pgm_rl  # noqa: E402


def random_grid(seed, shape=(3, 3), low=-2.0, high=2.0):
    """A GridWorld with uniform random rewards in [low, high] and a random start."""
    rng = np.random.default_rng(seed)
    start = (int(rng.integers(shape[0])), int(rng.integers(shape[1])))
    return pgm_rl.GridWorld(rng.uniform(low, high, shape), start)


def tv_tolerance(num_effective, n_states, z=4.0):
    """Bound on the TV of empirical marginals from ``num_effective`` iid-equivalent draws.

    E|p_hat - p| <= sqrt(p (1 - p) / n) per state, so E[TV] <= 0.5 * sqrt(S / n); ``z`` widens it.
    """
    return z * 0.5 * np.sqrt(n_states / num_effective)


@pytest.fixture
def small_problem():
    """A non-degenerate enumerable problem: 3x3 random grid, T = 5, beta = 0.5."""
    return random_grid(1), 5, 0.5


@pytest.fixture
def no_work(monkeypatch):
    """Make every command's work (solving, loading, fitting) fail the test: a command's outputs
    must be refused before it."""
    import importlib

    import pgm_rl.cli.fit
    import pgm_rl.exact
    import pgm_rl.io
    from pgm_rl.cli.program import COMMANDS

    for module in COMMANDS.values():  # first: a module imported under the patches keeps the fakes
        importlib.import_module(module)

    def fail(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(pgm_rl.exact, "solve", fail)
    monkeypatch.setattr(pgm_rl.io, "load", fail)
    monkeypatch.setattr(pgm_rl.cli.fit, "_fit", fail)
