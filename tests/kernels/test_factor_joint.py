"""Every registry kernel honours a model's own trajectory-level terms (issue 18, item 1).

The model is :func:`pgm_rl.trajectory_model` plus ``numpyro.factor("revisits", ...)``, a
penalty on the number of states the path enters again, a function of the whole path that no
Markov message can hold: on a 3x3 grid (T = 4, 625 action sequences) and on the small
stochastic MDP of ``test_joint.py`` (slow). The reference is brute-force enumeration of every
(start, actions, outcomes) cell with the factor added; the test is the chi-square of
``test_joint.py`` on iid last draws of 1500 chains. ``test_the_factor_changes_the_law`` shows the test has the power
to see a kernel that ignores the factor.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import MCMC
from test_joint import (
    ALPHA,
    DETERMINISTIC,
    STOCHASTIC,
    cell_of,
    chi_square,
    enumerate_joint,
)

import pgm_rl
from pgm_rl.kernels import KERNELS

NUM_CHAINS, STEPS = 1500, 40
PENALTY = -0.8
# A 3x3 grid, start in the corner, a goal cell across and a cheap cell on the way.
GRID = pgm_rl.GridWorld(
    np.array([[0.0, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 1.0]]) - 0.1, (0, 0)
)
SETTINGS = {
    "particle-gibbs": {"num_particles": 8},
    "guided-particle-gibbs": {"num_particles": 8},
    "replica-exchange": {"num_rungs": 3},
    "mixed-hmc": {"num_discrete_updates": 5},
}
VARIANTS = [
    ("action-gibbs", {"proposal": "mh"}),
    ("suffix-mh", {"block_size": 2}),
    ("replica-exchange", {"num_rungs": 3, "base_kernel": "action-gibbs"}),
    ("replica-exchange", {"num_rungs": 3, "base_kernel": "particle-gibbs"}),
]


def revisits(states):
    """How many of the path's states (T + 1,) were entered before: a whole-path term."""
    same = states[:, None] == states[None, :]
    return jnp.sum(jnp.any(jnp.triu(same, 1), axis=0))


def revisit_model(env, horizon, beta):
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("revisits", PENALTY * revisits(traj.states))


def enumerate_with_factor(world, horizon, beta):
    """Exact cell probabilities of the revisit model (enumeration times exp(f), renormalised)."""
    plain = enumerate_joint(world, horizon, beta)
    n_pairs = world.n_actions * int(np.asarray(world.outcome_states).shape[2])
    cells = np.arange(plain.size)
    start = cells // n_pairs**horizon
    pairs = (cells[:, None] // n_pairs ** np.arange(horizon)[::-1]) % n_pairs
    per_action = n_pairs // world.n_actions
    actions, outcomes = pairs // per_action, pairs % per_action
    possible = plain > 0
    states, _ = pgm_rl.rollout(world, actions[possible], start[possible], outcomes[possible])
    weights = np.zeros_like(plain)
    weights[possible] = plain[possible] * np.exp(PENALTY * np.asarray(jax.vmap(revisits)(states)))
    return weights / weights.sum()


def cases():
    for name, record in KERNELS.items():
        if record.targets_posterior:
            marks = [pytest.mark.slow] if record.builtin else []
            yield pytest.param(name, SETTINGS.get(name, {}), marks=marks, id=name)
    for name, params in VARIANTS:
        label = ",".join(f"{key}={value}" for key, value in params.items())
        yield pytest.param(name, params, marks=[pytest.mark.slow], id=f"{name}({label})")


def last_draws(name, params, world, horizon, beta, model=revisit_model, seed=1):
    record = KERNELS[name]
    mcmc = MCMC(
        record.make(model, **params),
        num_warmup=STEPS,
        num_samples=1,
        num_chains=NUM_CHAINS,
        chain_method=record.chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), world, horizon, beta)
    samples = {key: np.asarray(value) for key, value in mcmc.get_samples().items()}
    actions = samples["actions"]
    start = samples.get("start", samples["states"][:, 0])
    outcomes = samples.get("outcomes", np.zeros_like(actions))
    return start, actions, outcomes


def check(world, horizon, beta, draws, what):
    exact = enumerate_with_factor(world, horizon, beta)
    counts = np.bincount(cell_of(world, *draws), minlength=exact.size)
    statistic, df, p_value = chi_square(counts, exact)
    assert p_value > ALPHA, (
        f"{what}: {len(draws[0])} iid trajectories of the revisit model differ from enumeration "
        f"(chi-square {statistic:.1f} on {df} df, p = {p_value:.2g})"
    )


@pytest.mark.parametrize(("name", "params"), list(cases()))
def test_every_kernel_honours_a_revisit_penalty_on_a_deterministic_mdp(name, params):
    check(GRID, 4, 1.0, last_draws(name, params, GRID, 4, 1.0), name)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params"), list(cases()))
def test_every_kernel_honours_a_revisit_penalty_on_a_stochastic_mdp(name, params):
    check(STOCHASTIC, 4, 1.5, last_draws(name, params, STOCHASTIC, 4, 1.5), name)


def test_the_factor_changes_the_law():
    """Power: a kernel that ignored the factor (sampling the plain trajectory model) fails."""
    draws = last_draws("suffix-mh", {}, GRID, 4, 1.0, model=pgm_rl.trajectory_model)
    exact = enumerate_with_factor(GRID, 4, 1.0)
    counts = np.bincount(cell_of(GRID, *draws), minlength=exact.size)
    assert chi_square(counts, exact)[2] < ALPHA


def test_trajectory_model_returns_the_trajectory():
    with numpyro.handlers.seed(rng_seed=0):
        traj = pgm_rl.trajectory_model(STOCHASTIC, 4, 1.0)
    assert isinstance(traj, pgm_rl.Trajectory)
    assert traj.actions.shape == (4,) and traj.states.shape == (5,) and traj.rewards.shape == (4,)
    assert traj.outcomes.shape == (4,)
    states, _ = pgm_rl.rollout(STOCHASTIC, traj.actions, traj.states[0], traj.outcomes)
    np.testing.assert_array_equal(states, traj.states)
    with numpyro.handlers.seed(rng_seed=0):
        assert pgm_rl.trajectory_model(DETERMINISTIC, 4, 1.0).outcomes is None


def test_trajectory_target_reads_the_factor():
    target = pgm_rl.trajectory_target(revisit_model, (DETERMINISTIC, 5, 1.5))
    assert target.factor.sites == ("revisits",)
    actions = jnp.array([1, 1, 1, 0, 0])
    # the path 0 1 2 0 0 0 enters three states again
    assert float(target.factor(0, actions, jnp.zeros(5, jnp.int32))) == pytest.approx(3 * PENALTY)
    assert pgm_rl.trajectory_target(pgm_rl.trajectory_model, (DETERMINISTIC, 5, 1.5)).factor is None


def test_other_latent_sites_are_refused_by_name():
    def model(env, horizon, beta):
        pgm_rl.trajectory_model(env, horizon, beta)
        numpyro.sample("goal", numpyro.distributions.Normal())

    with pytest.raises(ValueError, match=r"'goal' \(latent\).*TrajectoryMH"):
        MCMC(KERNELS["suffix-mh"].make(model), num_warmup=1, num_samples=1).run(
            jax.random.key(0), DETERMINISTIC, 3, 1.0
        )


def test_stepwise_mh_refuses_trajectory_terms():
    with pytest.raises(ValueError, match=r"StepwiseMH.*'revisits'"):
        MCMC(KERNELS["stepwise-mh"].make(revisit_model), num_warmup=1, num_samples=1).run(
            jax.random.key(0), DETERMINISTIC, 3, 1.0
        )


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_a_nan_or_infinite_factor_is_named(bad):
    def model(env, horizon, beta):
        traj = pgm_rl.trajectory_model(env, horizon, beta)
        numpyro.factor("budget", jnp.where(traj.actions[0] == 1, bad, 0.0))

    with pytest.raises(
        ValueError, match=r"site 'budget' is (nan|inf) for the trajectory .*actions"
    ):
        MCMC(KERNELS["action-gibbs"].make(model), num_warmup=1, num_samples=1).run(
            jax.random.key(0), DETERMINISTIC, 3, 1.0
        )
