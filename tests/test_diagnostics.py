"""pgm_rl.diagnostics: DataTree layout, summary through arviz-stats, distance to exact."""

import subprocess
import sys

import arviz_stats as azs
import jax
import numpy as np
import pytest
from conftest import random_grid, tv_tolerance
from numpyro.infer import MCMC

import pgm_rl
from pgm_rl import TabularMDP, rollout
from pgm_rl.diagnostics import (
    best_state,
    compare_to_exact,
    empirical_state_marginals,
    env_from_datatree,
    summary,
    to_datatree,
    trajectory_states,
    tv_distance,
)
from pgm_rl.kernels import TrajectoryMH

HORIZON, BETA = 4, 0.5


@pytest.fixture(scope="module")
def env():
    return random_grid(1, (3, 3))


@pytest.fixture(scope="module")
def exact(env):
    return pgm_rl.solve(env, HORIZON, BETA)


def run_mcmc(kernel, env, horizon, beta, chains, warmup, samples, seed=0, extra_fields=()):
    mcmc = MCMC(
        kernel(pgm_rl.trajectory_model),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), env, horizon, beta, extra_fields=extra_fields)
    return mcmc


@pytest.fixture(scope="module")
def mcmc(env):
    return run_mcmc(TrajectoryMH, env, HORIZON, BETA, 2, 100, 300, extra_fields=("accept_prob",))


@pytest.fixture(scope="module")
def tree(mcmc, env, exact):
    return to_datatree(mcmc, env, exact)


def test_mcmc_tree_layout(tree, mcmc, env, exact):
    post = tree["posterior"]
    assert post["actions"].dims == ("chain", "draw", "time")
    assert post["states"].dims == ("chain", "draw", "step")
    assert post["rewards"].dims == ("chain", "draw", "time")
    assert post["return"].dims == ("chain", "draw")
    # the constant start (step 0) stays out of the posterior: steps 1..T, the states entered
    assert post.sizes == {"chain": 2, "draw": 300, "time": HORIZON, "step": HORIZON}
    np.testing.assert_array_equal(post["step"].values, np.arange(1, HORIZON + 1))
    samples = mcmc.get_samples(group_by_chain=True)
    np.testing.assert_array_equal(post["actions"].values, samples["actions"])
    states, rewards = rollout(env, samples["actions"])
    np.testing.assert_array_equal(post["states"].values, states[..., 1:])
    full = trajectory_states(tree)
    assert full.dims == ("chain", "draw", "step")
    np.testing.assert_array_equal(full["step"].values, np.arange(HORIZON + 1))
    np.testing.assert_array_equal(full.values, states)
    np.testing.assert_allclose(post["return"].values, np.asarray(rewards).sum(-1))
    stats = tree["sample_stats"]
    assert stats["acceptance_rate"].dims == ("chain", "draw")
    assert ((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1)).all()
    data = tree["constant_data"]
    np.testing.assert_array_equal(data["grid"].values, env.rewards)
    np.testing.assert_array_equal(data["next_state"].values, env.next_state)
    assert tree.attrs["horizon"] == HORIZON and tree.attrs["beta"] == BETA
    assert tree.attrs["start_state"] == env.start_state
    assert tree.attrs["sampler"] == "TrajectoryMH"
    group = tree["exact"]
    np.testing.assert_allclose(group["state_marginals"].values, exact.state_marginals)
    np.testing.assert_allclose(group["action_marginals"].values, exact.action_marginals)
    assert float(group["log_z"]) == exact.log_z
    assert float(group["expected_return"]) == exact.expected_return
    assert "observed_data" not in tree.children


@pytest.mark.filterwarnings("ignore:Some donated buffers")
def test_builtin_kernel_stats_are_named(env):
    from numpyro.infer import HMC, MixedHMC

    mcmc = MCMC(
        MixedHMC(HMC(pgm_rl.trajectory_model, trajectory_length=1.2), num_discrete_updates=20),
        num_warmup=20,
        num_samples=30,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.key(0), env, HORIZON, BETA, extra_fields=("accept_prob", "hmc_state.diverging")
    )
    stats = to_datatree(mcmc, env)["sample_stats"]
    assert set(stats.data_vars) == {"acceptance_rate", "diverging"}
    assert stats["acceptance_rate"].shape == (2, 30)


def test_from_dict_one_chain_and_many(env, exact):
    draws = exact.sample(jax.random.key(3), 50)
    one = to_datatree(draws, env, exact)
    assert one["posterior"].sizes["chain"] == 1 and one["posterior"].sizes["draw"] == 50
    np.testing.assert_array_equal(trajectory_states(one).values[0], draws["states"])
    np.testing.assert_allclose(one["posterior"]["rewards"].values[0], draws["rewards"])
    many = to_datatree(
        {"actions": np.asarray(draws["actions"]).reshape(5, 10, HORIZON)}, env, beta=BETA
    )
    assert many["posterior"].sizes["chain"] == 5 and "exact" not in many.children
    assert many.attrs["beta"] == BETA


def test_from_dict_bad_input(env, exact):
    actions = np.zeros((3, HORIZON), int)
    with pytest.raises(ValueError, match="beta is required"):
        to_datatree({"actions": actions}, env)
    with pytest.raises(ValueError, match="shape"):
        to_datatree({"actions": np.zeros(HORIZON, int)}, env, exact)
    with pytest.raises(ValueError, match="action ids"):
        to_datatree({"actions": actions + 7}, env, exact)
    with pytest.raises(TypeError, match="integer"):
        to_datatree({"actions": actions + 0.5}, env, exact)
    with pytest.raises(ValueError, match="horizon"):
        to_datatree({"actions": actions}, env, exact, horizon=HORIZON + 1)
    with pytest.raises(ValueError, match="log_weights"):
        to_datatree({"actions": actions, "log_weights": np.zeros((3, 1))}, env, exact)
    with pytest.raises(TypeError, match="key"):
        to_datatree({"actions": actions}, env, exact, key=jax.random.key(0))
    with pytest.raises(ValueError, match="rollout"):
        to_datatree({"actions": actions, "states": np.zeros((3, HORIZON + 1), int) + 1}, env, exact)
    with pytest.raises(ValueError, match="horizon"):
        to_datatree({"actions": np.zeros((3, HORIZON + 1), int)}, env, exact)
    with pytest.raises(TypeError, match="source"):
        to_datatree([1, 2], env, exact)
    with pytest.raises(TypeError, match="env"):
        to_datatree({"actions": actions}, "grid", exact)


def test_mcmc_env_must_match(mcmc):
    with pytest.raises(ValueError, match="env must be the environment"):
        to_datatree(mcmc, random_grid(2, (3, 3)))
    with pytest.raises(TypeError, match="horizon, beta and key"):
        to_datatree(mcmc, mcmc._args[0], beta=1.0)


def test_summary_agrees_with_arviz_stats(tree):
    table = summary(tree)
    returns = tree["posterior"]["return"]
    dims = ["chain", "draw"]
    assert table.loc["return", "r_hat"] == pytest.approx(float(azs.rhat(returns, sample_dims=dims)))
    assert table.loc["return", "ess_bulk"] == pytest.approx(
        float(azs.ess(returns, sample_dims=dims))
    )
    assert table.loc["return", "ess_tail"] == pytest.approx(
        float(azs.ess(returns, sample_dims=dims, method="tail"))
    )
    assert table.loc["return", "mcse_mean"] == pytest.approx(
        float(azs.mcse(returns, sample_dims=dims, method="mean"))
    )
    assert table.loc["return", "mean"] == pytest.approx(float(returns.mean()))
    final = tree["posterior"]["states"].sel(step=HORIZON)
    ends = table.attrs["end_states"]
    counts = np.bincount(final.values.ravel(), minlength=9)
    assert ends == sorted(ends, key=lambda state: -counts[state])  # most frequent first
    assert counts[ends[:-1]].sum() < 0.9 * final.size <= counts[ends].sum()  # the fewest for 90%
    for state, name in zip(ends, table.index[1:-1], strict=True):
        row_, col = divmod(state, 3)
        assert name == f"end[cell=({row_}, {col})]"
        at = (final == state).astype(float)
        row = table.loc[name]
        assert row["mean"] == pytest.approx(float(at.mean()))
        assert row["r_hat"] == pytest.approx(float(azs.rhat(at, sample_dims=dims)))
        assert row["mcse_mean"] == pytest.approx(
            float(azs.mcse(at, sample_dims=dims, method="mean"))
        )
    assert len(table) == len(ends) + 2  # return, the end rows, the worst occupancy indicator
    assert table.index[-1].startswith("occupancy[t=")
    assert table.attrs["worst_r_hat"] == pytest.approx(table["r_hat"].max())
    assert table.attrs["worst_r_hat_at"] == table["r_hat"].astype(float).idxmax()
    assert list(table.columns) == [
        "mean",
        "sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
        "mcse_mean",
        "mcse_sd",
    ]


def test_compare_to_exact_matches_direct_computation(tree, env, exact):
    comparison = compare_to_exact(tree, exact)
    direct = tv_distance(
        empirical_state_marginals(trajectory_states(tree).values, env.n_states),
        exact.state_marginals,
    )
    np.testing.assert_allclose(comparison["tv"].values, direct)
    assert float(comparison["mean_tv"]) == pytest.approx(direct.mean())
    error = float(tree["posterior"]["return"].mean()) - exact.expected_return
    assert float(comparison["expected_return_error"]) == pytest.approx(error)
    from_group = compare_to_exact(tree)
    np.testing.assert_allclose(from_group["tv"].values, comparison["tv"].values)
    assert float(from_group["expected_return_error"]) == pytest.approx(error)


def test_exact_draws_are_close_to_exact(env, exact):
    """Exact iid draws: TV within the sample-size bound, return error within 4 MCSE."""
    n = 4000
    draws = exact.sample(jax.random.key(7), n)
    tree = to_datatree(
        {"actions": np.asarray(draws["actions"]).reshape(4, n // 4, HORIZON)}, env, exact
    )
    comparison = compare_to_exact(tree)
    assert float(comparison["max_tv"]) < tv_tolerance(n, env.n_states)
    assert abs(float(comparison["expected_return_error"])) < 4 * float(
        comparison["expected_return_mcse"]
    )
    assert float(comparison["max_r_hat"]) < 1.01
    assert not bool(comparison["disagrees"])


def test_compare_to_exact_bad_input(tree, env):
    with pytest.raises(ValueError, match="horizon"):
        compare_to_exact(tree, pgm_rl.solve(env, HORIZON + 1, BETA))
    with pytest.raises(TypeError, match="ExactPosterior"):
        compare_to_exact(tree, "exact")
    draws = {"actions": np.zeros((2, 3, HORIZON), int)}
    with pytest.raises(ValueError, match="no 'exact' group"):
        compare_to_exact(to_datatree(draws, env, beta=BETA))
    with pytest.raises(TypeError, match="DataTree"):
        summary({"posterior": None})


def test_env_round_trip(tree, env):
    rebuilt = env_from_datatree(tree)
    assert rebuilt.start == env.start
    np.testing.assert_array_equal(rebuilt.rewards, env.rewards)
    mdp = TabularMDP(env.next_state, env.reward, 2)
    exact = pgm_rl.solve(mdp, HORIZON, BETA)
    tabular = to_datatree(exact.sample(jax.random.key(0), 20), mdp, exact)
    assert "grid" not in tabular["constant_data"]
    rebuilt = env_from_datatree(tabular)
    assert type(rebuilt) is TabularMDP and rebuilt.start_state == 2
    np.testing.assert_array_equal(rebuilt.reward, mdp.reward)
    table = summary(tabular)  # one chain: no R-hat anywhere
    assert len(table) == len(table.attrs["end_states"]) + 2
    assert table.index[1].startswith("end[state=") and table.index[-1] == "occupancy[no R-hat]"
    assert np.isnan(table.attrs["worst_r_hat"]) and not table.attrs["flagged"]
    two_chains = {"actions": np.asarray(exact.sample(jax.random.key(1), 40)["actions"])}
    two_chains["actions"] = two_chains["actions"].reshape(2, 20, HORIZON)
    table = summary(to_datatree(two_chains, mdp, exact))
    assert table.index[-1].startswith("occupancy[t=") and "state=" in table.index[-1]


def test_best_state_is_the_goal_cell():
    env = pgm_rl.GridWorld.notebook()
    assert best_state(env) == env.state_of(0, 5)


def test_any_kernel_class_through_mcmc(env):
    mcmc = MCMC(
        TrajectoryMH(pgm_rl.trajectory_model), num_warmup=10, num_samples=20, progress_bar=False
    )
    mcmc.run(jax.random.key(0), env, HORIZON, BETA)  # no extra_fields: no sample_stats vars
    tree = to_datatree(mcmc, env)
    assert tree["posterior"].sizes["chain"] == 1
    assert "acceptance_rate" not in tree.get("sample_stats", {})


@pytest.mark.slow  # a fresh interpreter; the other import order runs by default
def test_to_datatree_when_arviz_base_is_imported_before_numpyro(tmp_path):
    """arviz_base loads numpyro lazily; imported first, it used to leave ``numpyro.infer``
    without ``initialization`` and ``from_numpyro`` failed. Fresh interpreter, that order."""
    code = (
        "import arviz_base\n"
        "import jax\n"
        "from numpyro.infer import MCMC\n"
        "import pgm_rl\n"
        "env = pgm_rl.GridWorld([[0.0, 1.0], [1.0, 2.0]], (0, 0))\n"
        "mcmc = MCMC(pgm_rl.kernels.TrajectoryMH(pgm_rl.trajectory_model), num_warmup=5,\n"
        "            num_samples=5, num_chains=2, chain_method='vectorized', progress_bar=False)\n"
        "mcmc.run(jax.random.key(0), env, 2, 0.5)\n"
        "print(dict(pgm_rl.diagnostics.to_datatree(mcmc, env)['posterior'].sizes))\n"
        "print(dict(arviz_base.from_numpyro(mcmc)['posterior'].sizes))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "'chain': 2, 'draw': 5" in result.stdout
