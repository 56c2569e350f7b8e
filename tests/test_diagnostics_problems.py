"""pgm_rl.diagnostics: stuck chains and runs that miss the posterior are flagged, correct ones not.

Issue 9 probes. ActionGibbs on a 5x5 grid (goal +5 at (0, 4), trap -10 at (2, 2), start (4, 0),
T = 12, beta = 1, 4 chains x (500 warmup + 1000 draws), seed 0): R-hat of the return 1.000, yet
the chains sit on different routes around the trap (occupancy R-hat 4.08 at t=4, cell (1, 1),
per-chain means 0, 0.95, 0, 0). TrajectoryMH on the notebook grid (T = 10, beta = 0.05) never
reaches the goal: mean TV 0.88 against a threshold of 0.024.
"""

import subprocess
import sys

import arviz_stats as azs
import jax
import numpy as np
import pytest
from arviz_stats.base import array_stats
from conftest import random_grid
from numpyro.infer import MCMC

import pgm_rl
from pgm_rl.diagnostics import (
    compare_to_exact,
    occupancy_r_hat,
    problems,
    summary,
    to_datatree,
    trajectory_states,
    weighted_state_marginals,
)
from pgm_rl.kernels import ActionGibbs, TrajectoryMH


def run_mcmc(kernel, env, horizon, beta, warmup, samples, seed=0, chains=4):
    mcmc = MCMC(
        kernel(pgm_rl.trajectory_model),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), env, horizon, beta)
    return mcmc


def trap_grid():
    rewards = np.zeros((5, 5))
    rewards[0, 4], rewards[2, 2] = 5.0, -10.0
    return pgm_rl.GridWorld(rewards, (4, 0))


@pytest.fixture(scope="module")
def stuck():
    env = trap_grid()
    exact = pgm_rl.solve(env, 12, 1.0)
    return to_datatree(run_mcmc(ActionGibbs, env, 12, 1.0, 500, 1000, seed=0), env, exact)


def test_stuck_chains_are_flagged_by_summary(stuck):
    table = summary(stuck)
    assert table.loc["return", "r_hat"] < 1.01  # the return alone looks converged
    occupancy = table.index[-1]
    assert occupancy.startswith("occupancy[t=") and "cell=(" in occupancy
    assert table.loc[occupancy, "r_hat"] > 2.0
    assert table.attrs["worst_r_hat"] == pytest.approx(table.loc[occupancy, "r_hat"])
    assert table.attrs["worst_r_hat_at"] == occupancy
    assert table.attrs["flagged"]
    # the named indicator is the one arviz-stats finds worst, computed independently
    step = int(occupancy.split("t=")[1].split(",")[0])
    row, col = (int(v) for v in occupancy.split("cell=(")[1].rstrip(")]").split(", "))
    cell = trap_grid().state_of(row, col)
    indicator = (trajectory_states(stuck).sel(step=step) == cell).astype(float)
    assert float(azs.rhat(indicator, sample_dims=["chain", "draw"])) == pytest.approx(
        table.attrs["worst_r_hat"]
    )
    lines = problems(stuck)
    assert len(lines) == 1 and occupancy in lines[0] and "R-hat" in lines[0]
    comparison = compare_to_exact(stuck)
    assert float(comparison["max_r_hat"]) == pytest.approx(table.attrs["worst_r_hat"])
    assert comparison.attrs["max_r_hat_at"] == occupancy


def test_occupancy_r_hat_is_arviz_rank_r_hat():
    """For 0/1 indicators the split R-hat used here equals arviz-stats' rank-normalised one."""
    rng = np.random.default_rng(0)
    states = rng.integers(0, 4, size=(3, 200, 6))
    states[1, :, 2] = rng.integers(0, 2, size=200)  # chains that disagree at step 2
    states[..., 0] = 0  # constant start: NaN
    states[..., 5] = rng.integers(0, 2, size=(3, 200))  # states 2, 3 never at step 5: NaN
    r_hat = occupancy_r_hat(states, 4)
    assert r_hat.shape == (6, 4)
    assert np.isnan(r_hat[0]).all() and np.isnan(r_hat[5, 2:]).all()
    for step in range(1, 6):
        for state in range(4):
            indicator = (states[..., step] == state).astype(float)
            if 0 < indicator.mean() < 1:
                expected = array_stats.rhat(indicator, method="rank")
                assert r_hat[step, state] == pytest.approx(expected, rel=1e-12)
    assert np.nanargmax(r_hat) // 4 == 2


def test_occupancy_r_hat_bad_input():
    with pytest.raises(TypeError, match="states"):
        occupancy_r_hat(np.zeros((2, 5, 3)), 2)
    with pytest.raises(ValueError, match="state indices"):
        occupancy_r_hat(np.full((2, 5, 3), 4), 2)


def test_trajectory_mh_on_the_notebook_grid_disagrees():
    env = pgm_rl.GridWorld.notebook()
    exact = pgm_rl.solve(env, 10, 0.05)
    tree = to_datatree(run_mcmc(TrajectoryMH, env, 10, 0.05, 500, 1000), env, exact)
    comparison = compare_to_exact(tree)
    assert bool(comparison["disagrees"])
    assert float(comparison["mean_tv"]) > float(comparison["tv_threshold"])
    assert float(comparison["max_tv"]) > float(comparison["max_tv_threshold"])
    lines = problems(tree, comparison)
    assert any(line.startswith("disagrees with the exact posterior: mean TV") for line in lines)
    assert any("E[return]" in line for line in lines)


def test_correct_runs_are_not_flagged():
    """Exact iid draws and a converged, autocorrelated ActionGibbs run (ESS ~2700 of 4000
    draws): no problem. n_ref is the TV-equivalent ESS, not the number of draws."""
    env = random_grid(1)
    exact = pgm_rl.solve(env, 5, 0.5)
    draws = exact.sample(jax.random.key(11), 4000)
    iid = to_datatree({"actions": np.asarray(draws["actions"]).reshape(4, 1000, 5)}, env, exact)
    gibbs = to_datatree(run_mcmc(ActionGibbs, env, 5, 0.5, 1000, 1000, seed=1), env, exact)
    for tree in (iid, gibbs):
        comparison = compare_to_exact(tree)
        assert not bool(comparison["disagrees"]), comparison
        assert problems(tree, comparison) == []
    comparison = compare_to_exact(gibbs)
    assert int(comparison["n_ref_tv"]) < 4000  # autocorrelated: fewer effective draws
    assert float(comparison["tv_threshold"]) > float(compare_to_exact(iid)["tv_threshold"])


def test_thresholds_are_exact_iid_quantiles(stuck):
    """The return threshold is mean + 4 sd of what sets of n_ref exact iid draws show; the TV
    thresholds are binomial replicates at the per-indicator effective sizes."""
    env = pgm_rl.GridWorld([[0.0, 1.0], [2.0, -1.0]], (0, 0))
    exact = pgm_rl.solve(env, 3, 1.0)
    draws = exact.sample(jax.random.key(3), 600)
    tree = to_datatree({"actions": np.asarray(draws["actions"]).reshape(2, 300, 3)}, env, exact)
    comparison = compare_to_exact(tree, key=jax.random.key(5), replicates=8)
    n_ret = int(comparison["n_ref_return"])
    bucket = 1 << (n_ret - 1).bit_length()
    _, return_key = jax.random.split(jax.random.key(5))
    errors = []
    for key in jax.random.split(return_key, 8):
        returns = np.asarray(exact.sample(key, bucket)["rewards"])[:n_ret].sum(-1)
        errors.append(abs(returns.mean() - exact.expected_return))
    assert float(comparison["return_error_threshold"]) == pytest.approx(
        np.mean(errors) + 4 * np.std(errors, ddof=1)
    )
    sizes = comparison["occupancy_ess"].values
    assert np.all((sizes >= 20) & (sizes <= 600))
    again = compare_to_exact(tree, exact, key=jax.random.key(5), replicates=8)
    assert float(again["tv_threshold"]) == float(comparison["tv_threshold"])
    with pytest.raises(ValueError, match="replicates"):
        compare_to_exact(tree, replicates=1)
    with pytest.raises(TypeError, match="comparison"):
        problems(tree, {"mean_tv": 0.0})
    with pytest.raises(ValueError, match="r_hat_threshold"):
        summary(tree, r_hat_threshold=0.5)


def test_weighted_state_marginals():
    states = np.array([[0, 1, 2], [0, 2, 2], [0, 1, 1]])
    log_weights = np.log([0.5, 0.25, 0.25]) + 3.0  # unnormalised
    marginals = weighted_state_marginals(states, log_weights, 3)
    np.testing.assert_allclose(marginals, [[1, 0, 0], [0, 0.75, 0.25], [0, 0.25, 0.75]])
    with pytest.raises(ValueError, match="log_weights"):
        weighted_state_marginals(states, np.zeros(2), 3)
    with pytest.raises(ValueError, match="state indices"):
        weighted_state_marginals(states, np.zeros(3), 2)
    with pytest.raises(TypeError, match="states"):
        weighted_state_marginals(states[0], np.zeros(3), 3)
    with pytest.raises(ValueError, match="log_weights"):
        weighted_state_marginals(states, np.full(3, -np.inf), 3)


def test_weighted_draws_are_resampled(small_problem):
    env, horizon, beta = small_problem
    result = pgm_rl.run_smc(jax.random.key(0), env, horizon, beta, 500)
    tree = to_datatree(result, env, beta=beta)
    assert (
        tree["posterior"].sizes["draw"] == 500 and tree.attrs["sampler"] == "SMCResult, resampled"
    )
    again = to_datatree(result, env, beta=beta)
    np.testing.assert_array_equal(tree["posterior"]["actions"], again["posterior"]["actions"])
    other = to_datatree(result, env, beta=beta, key=jax.random.key(1))
    assert not np.array_equal(tree["posterior"]["actions"], other["posterior"]["actions"])
    one_hot = np.full(500, -np.inf)
    one_hot[7] = 0.0
    draws = {"actions": np.asarray(result.actions), "log_weights": one_hot}
    single = to_datatree(draws, env, beta=beta)
    assert (single["posterior"]["actions"].values == np.asarray(result.actions)[7]).all()


def test_plain_arviz_functions_run_on_the_tree(stuck):
    """azs.summary / ess / rhat as an ArviZ user calls them: no error, finite return row."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant rewards[0] on this grid
        table = azs.summary(stuck)
        ess = azs.ess(stuck)
        rhat = azs.rhat(stuck)
    assert np.isfinite(table.loc["return", "r_hat"])
    for result in (ess, rhat):  # the posterior node (a DataTree) or a Dataset
        assert np.isfinite(float(result["return"]))
    assert "states[1]" in table.index and "states[0]" not in table.index


def test_from_numpyro_after_import_pgm_rl(tmp_path):
    """A user's own arviz_base.from_numpyro works after ``import pgm_rl``, in either order."""
    for first in ("import pgm_rl\nimport arviz_base\n",):  # the other order: test_diagnostics
        code = first + (
            "import jax\n"
            "import pgm_rl.diagnostics\n"
            "from numpyro.infer import MCMC\n"
            "env = pgm_rl.GridWorld([[0.0, 1.0], [1.0, 2.0]], (0, 0))\n"
            "mcmc = MCMC(pgm_rl.kernels.TrajectoryMH(pgm_rl.trajectory_model), num_warmup=5,\n"
            "            num_samples=5, num_chains=2, chain_method='vectorized',\n"
            "            progress_bar=False)\n"
            "mcmc.run(jax.random.key(0), env, 2, 0.5)\n"
            "print(dict(arviz_base.from_numpyro(mcmc)['posterior'].sizes))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert "'chain': 2, 'draw': 5" in result.stdout
