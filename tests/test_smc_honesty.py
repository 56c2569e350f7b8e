"""Issue 17, section 1: SMC runs whose log Z is wrong must say so.

A proposal far from the target (all weights equal, SE 0, log Z off), runs that disagree with
each other or with the exact log Z far beyond their SEs, and the weights' bookkeeping at large
``beta |r|`` (normalised in the working precision: ``logsumexp == 0``, ESS <= N, SE <= 1).
"""

import warnings

import jax
import numpy as np
import pytest
from conftest import random_grid
from helpers import run_cli as run
from helpers import run_float32_script
from jax.scipy.special import logsumexp
from test_smc import trap_grid
from test_variational_smc import poor_proposal, slippery_grid

import pgm_rl
from pgm_rl import cli
from pgm_rl.smc import (
    MIN_PROPOSAL_ESS,
    SMCProposalWarning,
    log_z_problems,
    run_smc,
    z_score,
)


def near_deterministic(env, horizon):
    """Always the first action; 1e-300 on the others (full support, in name only)."""
    probs = np.full((horizon, env.n_states, env.n_actions), 1e-300)
    probs[..., 0] = 1.0
    return probs


def quiet_run(*args, **kwargs):
    """``run_smc`` that must not warn at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return run_smc(*args, **kwargs)


# ----------------------------------------------------------- a proposal far from the target


def test_near_deterministic_proposal_is_flagged(small_problem):
    """Before: log Z -18.4 against 7.09 with SE 0 and ESS N, no warning (issue 17)."""
    env, horizon, beta = small_problem
    exact = pgm_rl.solve(env, horizon, beta).log_z
    with pytest.warns(SMCProposalWarning, match="proposal far from the target"):
        result = run_smc(
            jax.random.key(0), env, horizon, beta, 500, proposal=near_deterministic(env, horizon)
        )
    assert float(result.ess) == pytest.approx(500.0) and float(result.log_z_se) < 1e-6
    assert result.proposal_mismatch and float(result.proposal_ess) < MIN_PROPOSAL_ESS
    assert len(result.problems()) == 1 and "mean nothing" in result.problems()[0]
    assert abs(z_score(result, exact)) > 1e6  # the estimate is far off ...
    assert "more than 4 standard errors" in log_z_problems([result], exact)[0]  # ... and said


def test_posterior_at_another_beta_is_flagged_and_good_proposals_are_not():
    """The exact posterior at beta 10 as proposal at beta 1 (measured: proposal_ess 3e-7 of 500,
    log Z off by 1.7 with SE 1e-8); at beta 0.1 (337 of 500), at beta 1 (500) and a poor random
    proposal (79-186 of 500) the runs are sound and must not warn."""
    env, horizon, beta = random_grid(4), 5, 1.0
    with pytest.warns(SMCProposalWarning):
        hot = run_smc(
            jax.random.key(0), env, horizon, beta, 500, proposal=pgm_rl.solve(env, horizon, 10.0)
        )
    assert hot.proposal_mismatch
    for proposal in (
        pgm_rl.solve(env, horizon, 0.1),
        pgm_rl.solve(env, horizon, beta),
        poor_proposal(env, horizon),
    ):
        result = quiet_run(jax.random.key(0), env, horizon, beta, 500, proposal=proposal)
        assert not result.proposal_mismatch and result.problems() == []
    assert float(quiet_run(jax.random.key(0), env, horizon, beta, 500).proposal_ess) == 500.0


@pytest.mark.filterwarnings("ignore::pgm_rl.smc.SMCSaturationWarning")  # far: few ancestors
def test_stochastic_pass_flags_a_far_proposal():
    env, horizon, beta = slippery_grid(), 5, 0.5
    with pytest.warns(SMCProposalWarning):
        result = run_smc(
            jax.random.key(0), env, horizon, beta, 300, proposal=near_deterministic(env, horizon)
        )
    assert result.proposal_mismatch
    assert not quiet_run(
        jax.random.key(0), env, horizon, beta, 300, proposal=poor_proposal(env, horizon)
    ).proposal_mismatch


@pytest.fixture(scope="module")
def policy_files(tmp_path_factory):
    """The exact posterior of the notebook grid at T = 3, fitted at beta 100 and at beta 0.5."""
    folder = tmp_path_factory.mktemp("proposals")
    paths = {}
    for beta in ("100", "0.5"):
        paths[beta] = str(folder / f"policy_{beta}.nc")
        fit = ["fit", "--horizon", "3", "--beta", beta, "--steps", "3", "--no-progress"]
        assert cli.main([*fit, "--out", paths[beta]]) == 0
    return paths


def test_cli_says_when_the_proposal_is_far_and_never_prints_se_0_as_exact(policy_files, capsys):
    """Before: ``log Z = -6.1213791 ± 0  (z n/a: SE 0), ESS 2000.0`` against exact 0.258."""
    smc = ["smc", "--horizon", "3", "--particles", "200", "--runs", "2"]
    code, out, err = run(capsys, *smc, "--beta", "0.001", "--proposal", policy_files["100"])
    assert code == 0, err
    assert "note: the proposal was fitted at beta=100, not at this run's --beta 0.001" in out
    for run_index in (0, 1):
        line = out.split(f"run {run_index}: log Z = ")[1].splitlines()[0]
        assert "(meaningless: see the warning)" in line and "n/a" not in line, line
        assert f"warning: run {run_index}: proposal far from the target" in out
    assert "are more than 4 standard errors from the exact log Z" in out
    # fitted at the run's beta: the exact posterior, every weight equal, nothing to say
    code, out, err = run(capsys, *smc, "--beta", "0.5", "--proposal", policy_files["0.5"])
    assert code == 0, err
    assert "note:" not in out and "warning" not in out and "meaningless" not in out


# ------------------------------------------------------ runs that disagree beyond their SE


def test_runs_far_from_exact_are_a_problem():
    """Bootstrap SMC on the notebook grid (T = 10, beta 1) never reaches the +10 goal: log Z
    -12.55 +- 0.005 against exact 9956.9 (z = -2.2e6), with no warning before."""
    env = pgm_rl.GridWorld.notebook()
    exact = pgm_rl.solve(env, 10, 1.0).log_z
    runs = [quiet_run(key, env, 10, 1.0, 2000) for key in jax.random.split(jax.random.key(0), 2)]
    assert all(z_score(r, exact) < -1e5 for r in runs)
    problems = log_z_problems(runs, exact)
    assert len(problems) == 1 and problems[0].startswith("runs 0, 1 are more than 4 standard")
    assert log_z_problems(runs) == []  # they agree with each other: only the exact value tells


def test_runs_that_disagree_with_each_other_are_a_problem():
    """The trap grid (issue 9): estimates spread over several units with "+- 1" each."""
    env = trap_grid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pgm_rl.smc.SMCSaturationWarning)
        runs = [run_smc(k, env, 12, 1.0, 2000) for k in jax.random.split(jax.random.key(0), 6)]
    problems = log_z_problems(runs)
    assert len(problems) == 1 and "runs disagree beyond their standard errors" in problems[0]


def test_healthy_runs_raise_no_problem(small_problem):
    """Calibrated runs: no line (measured over 3000 runs of 500 particles on three problems:
    |z| > 4 in 0.03% of runs, 1 of 600 groups of five warned)."""
    env, horizon, beta = small_problem
    exact = pgm_rl.solve(env, horizon, beta).log_z
    runs = [quiet_run(k, env, horizon, beta, 500) for k in jax.random.split(jax.random.key(1), 5)]
    assert log_z_problems(runs, exact) == []
    assert log_z_problems(runs[:1]) == []  # one run: nothing to compare
    with pytest.raises(ValueError, match="threshold"):
        log_z_problems(runs, exact, threshold=0)
    with pytest.raises(TypeError, match="SMCResult"):
        log_z_problems([])
    with pytest.raises(ValueError, match="exact_log_z"):
        z_score(runs[0], float("nan"))


def test_cli_warns_about_runs_far_from_exact(capsys):
    code, out, err = run(
        capsys, "smc", "--horizon", "10", "--beta", "1", "--particles", "2000", "--runs", "2"
    )
    assert code == 0, err
    assert "warning: runs 0, 1 are more than 4 standard errors from the exact log Z" in out


# ---------------------------------------------------------- the weights at large beta |r|


@pytest.mark.parametrize(
    "env, horizon, beta",
    [(pgm_rl.GridWorld.notebook(), 6, 1e17), (slippery_grid(), 4, 1e15)],
    ids=["notebook", "slippery"],
)
def test_weights_normalised_at_large_beta(env, horizon, beta):
    """Before (notebook, beta 1e17, 1000 particles): logsumexp(log_weights) = 6.64, ESS 0.0013,
    SE 62.7 and a saturation warning; log Z is right to its dtype's rounding."""
    result = quiet_run(jax.random.key(0), env, horizon, beta, 1000)
    assert float(logsumexp(result.log_weights)) == pytest.approx(0.0, abs=1e-12)
    assert 1.0 <= float(result.ess) <= 1000.0
    assert 1.0 <= float(result.effective_ancestors) <= 1000.0
    assert 0.0 <= float(result.log_z_se) <= 1.0
    if env.is_deterministic:  # (slippery: the particles miss the rare best slips, z = -4e14)
        assert abs(z_score(result, pgm_rl.solve(env, horizon, beta).log_z)) <= 4.0


F32_SCRIPT = """
import json
import jax
assert not jax.config.jax_enable_x64
from jax.scipy.special import logsumexp
import pgm_rl
env = pgm_rl.GridWorld.notebook()
result = pgm_rl.run_smc(jax.random.key(0), env, 6, 1e8, 1000)
exact = pgm_rl.solve(env, 6, 1e8).log_z
print(json.dumps({"lse": float(logsumexp(result.log_weights)), "ess": float(result.ess),
                  "se": float(result.log_z_se), "z": pgm_rl.smc.z_score(result, exact)}))
"""


@pytest.mark.slow  # a fresh interpreter (11-15 s); the float64 test above runs the same code
def test_weights_normalised_in_float32(tmp_path):
    """Before: ESS 3.8e4 for N = 1000 at beta 1e8 (the weights summed to e^-2.5)."""
    found = run_float32_script(F32_SCRIPT, tmp_path)
    assert abs(found["lse"]) < 1e-5
    assert 1.0 <= found["ess"] <= 1000.0 * (1 + 1e-6)
    assert 0.0 <= found["se"] <= 1.0 and abs(found["z"]) <= 4.0
