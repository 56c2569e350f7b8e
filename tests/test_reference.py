"""A reference behind every run (issue 18, item 2): pgm_rl.diagnostics.reference, the
``reference`` group of to_datatree, compare_to_reference and problems(dt) by default.

Probe before the change (TrajectoryMH, 4 x 2000 draws, seed 1, on the 8x8 grid with a trap row,
two gaps and two goals, T = 12, beta = 1: every draw returns -1.2, the exact mean is 12.16):
``problems(to_datatree(mcmc, env))`` was []. After: four "disagrees with the exact posterior"
lines (mean TV 0.73 > 0.049, max TV 0.85 > 0.062, |E[return] error| 13.4 > 0.19, occupancy z
-142 at t=11, cell (0, 1)).

The importance-sampling reference of a model with extra terms (the revisit penalty of
``tests/kernels/test_factor_joint.py``) is checked against brute-force enumeration, on a
deterministic grid and on a stochastic MDP (outcome indices recovered from the exact draws).
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from helpers import run_cli, run_mcmc
from scipy.special import logsumexp

import pgm_rl
from pgm_rl import io
from pgm_rl.diagnostics import (
    MIN_REFERENCE_ESS,
    Reference,
    check_run,
    compare_to_exact,
    compare_to_reference,
    problems,
    reference,
    to_datatree,
)
from pgm_rl.kernels import ActionGibbs, TrajectoryMH

sys.path.insert(0, str(Path(__file__).parent / "kernels"))
from test_factor_joint import (
    GRID,
    PENALTY,
    enumerate_with_factor,
    revisit_model,
    revisits,
)
from test_joint import STOCHASTIC, enumerate_joint

HORIZON, BETA = 4, 1.0


def trap_grid():
    """8x8, step cost 0.1, a trap row (row 3, -10) with gaps at columns 1 and 6, two +4 goals
    beyond it at (0, 1) and (0, 6), start (7, 3) below it."""
    rewards = np.full((8, 8), -0.1)
    rewards[3, :] = -10.0
    rewards[3, 1] = rewards[3, 6] = -0.1
    rewards[0, 1] = rewards[0, 6] = 4.0
    return pgm_rl.GridWorld(rewards, (7, 3))


def test_a_stuck_run_is_flagged_without_an_explicit_exact():
    """TrajectoryMH, 4 x 300 draws on the trap grid: every chain below the trap row."""
    env = trap_grid()
    mcmc = run_mcmc(
        TrajectoryMH(pgm_rl.trajectory_model), env, 12, 1.0, seed=2, warmup=100, draws=300
    )
    assert np.allclose(np.asarray(mcmc.get_samples()["rewards"]).sum(-1), -1.2)
    dt = to_datatree(mcmc, env)
    assert "exact" in dt.children
    lines = problems(dt)  # was []
    assert any(line.startswith("disagrees with the exact posterior:") for line in lines)
    assert problems(dt, reference=False) == []  # opted out: R-hat alone sees nothing
    assert problems(to_datatree(mcmc, env, reference=False)) == []


@pytest.mark.slow
def test_trap_grid_run_is_flagged_without_an_explicit_exact():
    """The issue's numbers: TrajectoryMH, 4 x 2000 draws (seed 1)."""
    env = trap_grid()
    mcmc = run_mcmc(TrajectoryMH(pgm_rl.trajectory_model), env, 12, 1.0, seed=1)
    returns = np.asarray(mcmc.get_samples()["rewards"]).sum(-1)
    assert np.allclose(returns, -1.2)  # every chain below the trap row
    dt = to_datatree(mcmc, env)  # the exact group comes with the run
    assert "exact" in dt.children
    lines = problems(dt)  # was []
    assert any(line.startswith("disagrees with the exact posterior: mean TV") for line in lines)
    assert any("|E[return] error|" in line for line in lines)
    assert problems(to_datatree(mcmc, env, reference=False)) == []


# ----------------------------------------------------------------------------- the reference


def enumerated(world, horizon, beta):
    """log Z, state marginals (T + 1, S) and E[return] of the revisit model, by enumeration."""
    plain = enumerate_joint(world, horizon, beta)
    cells = enumerate_with_factor(world, horizon, beta)
    log_z = float(pgm_rl.solve(world, horizon, beta).log_z)
    n_pairs = world.n_actions * int(np.asarray(world.outcome_states).shape[2])
    index = np.arange(plain.size)
    start = index // n_pairs**horizon
    pairs = (index[:, None] // n_pairs ** np.arange(horizon)[::-1]) % n_pairs
    per_action = n_pairs // world.n_actions
    keep = cells > 0
    states, rewards = (
        np.asarray(x)
        for x in pgm_rl.rollout(
            world, (pairs // per_action)[keep], start[keep], (pairs % per_action)[keep]
        )
    )
    f = PENALTY * np.asarray(jax.vmap(revisits)(jnp.asarray(states)))
    log_z += float(logsumexp(f, b=plain[keep]))
    marginals = np.stack(
        [np.bincount(states[:, t], cells[keep], world.n_states) for t in range(horizon + 1)]
    )
    return log_z, marginals, float(cells[keep] @ rewards.sum(-1))


@pytest.mark.parametrize("world", [GRID, STOCHASTIC], ids=["grid", "stochastic"])
def test_importance_reference_agrees_with_enumeration(world):
    horizon = HORIZON if world is GRID else 3
    ref = reference(revisit_model, world, horizon, BETA, num_samples=8192, key=jax.random.key(4))
    log_z, marginals, expected_return = enumerated(world, horizon, BETA)
    assert ref.kind == "importance" and ref.sites == ("revisits",)
    assert 1000 < ref.ess < ref.num_samples == 8192
    assert abs(ref.log_z - log_z) < 4 * ref.log_z_se
    assert abs(ref.expected_return - expected_return) < 4 * ref.expected_return_se
    assert abs(ref.log_z - float(pgm_rl.solve(world, horizon, BETA).log_z)) > 10 * ref.log_z_se
    tested = ref.state_marginals_se > 0
    z = (ref.state_marginals - marginals)[tested] / ref.state_marginals_se[tested]
    assert np.abs(z).max() < 4.5, np.abs(z).max()  # Bonferroni over about 40 cells
    assert np.allclose(ref.state_marginals[~tested], marginals[~tested], atol=1e-3)
    draws = ref.sample(jax.random.key(1), 50)
    assert draws["actions"].shape == (50, horizon) and draws["states"].shape == (50, horizon + 1)


def test_the_exact_reference_of_the_trajectory_model():
    ref = reference(pgm_rl.trajectory_model, GRID, HORIZON, BETA)
    exact = pgm_rl.solve(GRID, HORIZON, BETA)
    assert ref.kind == "exact" and ref.log_z_se == 0 and ref.ess == np.inf
    assert ref.log_z == pytest.approx(float(exact.log_z))
    np.testing.assert_allclose(ref.state_marginals, exact.state_marginals)
    assert ref.samples is None and ref.sample(jax.random.key(0), 3)["actions"].shape == (3, 4)
    assert "exact posterior" in repr(ref)


def test_bad_input_is_refused_by_name():
    def nan_model(env, horizon, beta):
        traj = pgm_rl.trajectory_model(env, horizon, beta)
        numpyro.factor("bad", jnp.where(traj.states[-1] == 8, jnp.nan, 0.0))

    with pytest.raises(ValueError, match=r"site 'bad' is nan for the trajectory with start 0"):
        reference(nan_model, GRID, HORIZON, BETA, num_samples=256)

    def infinite_model(env, horizon, beta):
        traj = pgm_rl.trajectory_model(env, horizon, beta)
        numpyro.factor("plus", jnp.where(traj.actions[0] == 3, jnp.inf, 0.0))

    with pytest.raises(ValueError, match=r"'plus' is inf for the trajectory .* actions \[3"):
        reference(infinite_model, GRID, HORIZON, BETA, num_samples=256)

    def impossible_model(env, horizon, beta):
        pgm_rl.trajectory_model(env, horizon, beta)
        numpyro.factor("never", -jnp.inf)

    with pytest.raises(ValueError, match="every one of the 64 trajectories"):
        reference(impossible_model, GRID, HORIZON, BETA, num_samples=64)
    with pytest.raises(ValueError, match="num_samples"):
        reference(revisit_model, GRID, HORIZON, BETA, num_samples=1)
    with pytest.raises(TypeError, match="num_samples"):
        reference(revisit_model, GRID, HORIZON, BETA, num_samples=10.5)
    with pytest.raises(TypeError, match="model"):
        reference("model", GRID, HORIZON, BETA)
    with pytest.raises(TypeError, match="key"):
        reference(revisit_model, GRID, HORIZON, BETA, key=3)

    def other_model():
        numpyro.sample("x", numpyro.distributions.Normal())

    with pytest.raises(ValueError, match="trajectory_model"):
        reference(other_model)


# ----------------------------------------------------------------------------- in the tree


@pytest.fixture(scope="module")
def factor_run():
    """ActionGibbs on the revisit model, 4 x 1000 draws, and its tree (reference by default)."""
    mcmc = run_mcmc(ActionGibbs(revisit_model), GRID, HORIZON, BETA, warmup=200, draws=1000)
    return mcmc, to_datatree(mcmc, GRID, reference_samples=8192)


def test_a_factor_run_carries_its_reference_through_netcdf(factor_run, tmp_path):
    mcmc, dt = factor_run
    assert "reference" in dt.children and "exact" not in dt.children
    group = dt["reference"]
    assert group.attrs["kind"] == "importance" and group.attrs["sites"] == "revisits"
    assert group["state_marginals"].dims == ("step", "state")
    assert problems(dt) == []  # judged against the reference, not flagged
    path = tmp_path / "run.nc"
    io.save(dt, str(path))
    loaded = check_run(io.load(str(path)))
    np.testing.assert_allclose(
        loaded["reference"]["state_marginals"].values, group["state_marginals"].values
    )
    before, after = compare_to_reference(dt), compare_to_reference(loaded)
    assert float(before["mean_tv"]) == pytest.approx(float(after["mean_tv"]))
    assert float(before["tv_threshold"]) == pytest.approx(float(after["tv_threshold"]))
    assert "importance-sampling reference (ESS" in before.attrs["reference"]
    damaged = loaded.copy()
    damaged["reference"] = loaded["reference"].to_dataset().drop_vars("ess")
    with pytest.raises(ValueError, match="reference variable 'ess' is missing"):
        check_run(damaged)
    with pytest.raises(ValueError, match=r"exact is the posterior of pgm_rl\.trajectory_model"):
        to_datatree(mcmc, GRID, pgm_rl.solve(GRID, HORIZON, BETA))
    assert "reference" not in to_datatree(mcmc, GRID, reference=False).children
    with pytest.raises(TypeError, match="reference must be"):
        to_datatree(mcmc, GRID, reference="yes")
    plain = reference(pgm_rl.trajectory_model, GRID, HORIZON, BETA)
    with pytest.raises(ValueError, match=r"reference is for a model with the extra site\(s\) \[\]"):
        to_datatree(mcmc, GRID, reference=plain)
    with pytest.raises(TypeError, match="reference_key"):
        to_datatree({"actions": np.zeros((3, HORIZON), int)}, GRID, beta=BETA, reference_key=1)


def test_the_importance_reference_flags_a_run_that_ignores_the_factor():
    """Exact draws of the Markov part (the revisit penalty ignored), judged by the revisit
    model's reference: flagged; against the exact posterior they pass."""
    exact = pgm_rl.solve(GRID, HORIZON, BETA)
    ref = reference(revisit_model, GRID, HORIZON, BETA, num_samples=8192, key=jax.random.key(2))
    draws = np.asarray(exact.sample(jax.random.key(5), 4000)["actions"]).reshape(4, 1000, -1)
    dt = to_datatree({"actions": draws}, GRID, beta=BETA, reference=ref)
    assert "reference" in dt.children
    lines = problems(dt)
    assert lines and all("importance-sampling reference (ESS" in line for line in lines), lines
    assert problems(to_datatree({"actions": draws}, GRID, exact)) == []
    other = reference(revisit_model, GRID, HORIZON + 1, BETA, num_samples=64)
    with pytest.raises(ValueError, match="reference is for horizon=5"):
        to_datatree({"actions": draws}, GRID, beta=BETA, reference=other)


def test_too_small_an_ess_is_said_in_one_line_instead_of_judging(factor_run):
    mcmc, _ = factor_run
    dt = to_datatree(mcmc, GRID, reference_samples=60)  # ESS < 60 < MIN_REFERENCE_ESS
    assert float(dt["reference"]["ess"]) < MIN_REFERENCE_ESS
    comparison = compare_to_reference(dt)
    assert not bool(comparison["judged"]) and not bool(comparison["disagrees"])
    (line,) = problems(dt)
    assert line.startswith("not judged against the importance-sampling reference (ESS")
    assert "too small" in line and "\n" not in line


def test_compare_to_exact_is_still_the_exact_comparison():
    env = GRID
    exact = pgm_rl.solve(env, HORIZON, BETA)
    draws = np.asarray(exact.sample(jax.random.key(0), 2000)["actions"]).reshape(2, 1000, -1)
    dt = to_datatree({"actions": draws}, env, exact)
    old, new = compare_to_exact(dt), compare_to_reference(dt)
    assert set(old.data_vars) == set(new.data_vars)
    assert float(old["tv_threshold"]) == float(new["tv_threshold"])
    assert new.attrs["reference"] == "the exact posterior"
    assert float(compare_to_reference(dt, Reference.from_posterior(exact))["mean_tv"]) == float(
        old["mean_tv"]
    )
    with pytest.raises(ValueError, match="no reference"):
        compare_to_reference(to_datatree({"actions": draws}, env, beta=1.0))
    with pytest.raises(TypeError, match="reference must be"):
        compare_to_reference(dt, "exact")


# ----------------------------------------------------------------------------- the command


def test_the_commands_opt_out_with_no_reference(capsys, tmp_path):
    grid = tmp_path / "grid.csv"
    grid.write_text("0,-1,-1\n-1,-5,4\n")
    argv = ["--grid", grid, "--horizon", "3", "--beta", "0.5"]
    run = ["--chains", "2", "--warmup", "20", "--samples", "40"]
    code, out, err = run_cli(capsys, "sample", "--kernel", "trajectory-mh", *argv, *run)
    assert code == 0, err
    assert "vs exact: mean TV" in out
    code, out, err = run_cli(
        capsys, "sample", "--kernel", "trajectory-mh", *argv, *run, "--no-reference"
    )
    assert code == 0, err
    assert "vs exact" not in out and "disagrees" not in out
    code, out, err = run_cli(capsys, "smc", *argv, "--particles", "100", "--runs", "2")
    assert code == 0 and "exact log Z" in out and "(z = " in out
    code, out, err = run_cli(
        capsys, "smc", *argv, "--particles", "100", "--runs", "2", "--no-reference"
    )
    assert code == 0, err
    assert "exact log Z" not in out and "(z = " not in out and out.count("\nrun ") == 2


# ----------------------------------------------------------------------------- false alarms


@pytest.mark.slow
def test_well_mixed_factor_runs_are_not_flagged_by_the_importance_reference():
    """ActionGibbs and SuffixMH on the revisit model (3x3 grid, T = 4), 5 seeds each, every tree
    with its own reference (key): no problem line in any of the 10."""
    from pgm_rl.kernels import SuffixMH

    flagged = []
    for seed in range(10):
        kernel = (ActionGibbs if seed % 2 else SuffixMH)(revisit_model)
        mcmc = run_mcmc(kernel, GRID, HORIZON, BETA, seed=seed, warmup=300, draws=2000)
        dt = to_datatree(mcmc, GRID, reference_key=jax.random.key(100 + seed))
        lines = problems(dt)
        if lines:
            flagged.append((seed, lines))
    assert flagged == []
