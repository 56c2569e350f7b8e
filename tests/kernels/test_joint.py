"""Every registered kernel that targets the posterior, judged on the JOINT law of whole trajectories.

The state-marginal checks (``test_registry.py``) cannot see a kernel that gets each time step
right but couples the steps wrongly. Here the cells are whole trajectories: action sequences on
a small deterministic MDP (2 actions, T = 5: 32 cells), and (start, action, outcome) sequences
on a small stochastic MDP with a random start (T = 4: 2 starts x 3 (action, outcome) pairs per
step, 162 possible cells). The reference is brute-force enumeration (itself checked against
:func:`pgm_rl.solve`).

Each kernel runs ``NUM_CHAINS`` independent chains from prior draws for ``STEPS`` steps and
keeps the last state of each, so the draws are iid and the effective sample size is the number
of chains. The test is Pearson's chi-square on those draws against the exact cell
probabilities (cells expected fewer than 5 times pooled; a draw in an impossible cell fails at
once), rejected at level ``ALPHA``; fixed keys. ``test_the_joint_check_catches_broken_coupling``
shows it fails a sampler whose every time step is exactly right but whose steps are decoupled.
"""

import itertools

import jax
import numpy as np
import pytest
from numpyro.infer import MCMC
from scipy import stats

import pgm_rl
from pgm_rl.kernels import KERNELS

NUM_CHAINS, STEPS, ALPHA = 1500, 40, 1e-3
MIN_EXPECTED = 5.0

# Deterministic: states 0, 1, 2 on a cycle; action 0 stays, action 1 moves on (cost 0.2);
# entering state 2 pays 1, state 1 pays 0.3. Reaching 2 early and staying there is coupled
# across time (whether to move at t depends on the moves before).
DETERMINISTIC = pgm_rl.TabularMDP(
    np.array([[0, 1], [1, 2], [2, 0]]),
    np.array([[0.0, 0.1], [0.3, 0.8], [1.0, -0.2]]),
    0,
)
DETERMINISTIC_HORIZON, DETERMINISTIC_BETA = 5, 1.5

# Stochastic: action 1 moves on with probability 0.7 (else stays), action 0 stays; the reward
# is that of the state entered (so the two outcomes of a move pay differently); random start.
_ENTER = np.array([0.0, 0.5, 1.0])
_NEXT = np.array([[[0, 0], [1, 0]], [[1, 1], [2, 1]], [[2, 2], [0, 2]]])
_PROBS = np.array([[[1.0, 0.0], [0.7, 0.3]]] * 3)
STOCHASTIC = pgm_rl.TabularMDP.from_outcomes(
    _NEXT, _PROBS, _ENTER[_NEXT], np.array([0.6, 0.4, 0.0])
)
STOCHASTIC_HORIZON, STOCHASTIC_BETA = 4, 1.5

# Registry kernels at the settings the test runs (small ensembles where a parameter only buys
# speed on big problems); the other settings of the kernels that have them in the slow run.
SETTINGS = {
    "particle-gibbs": {"num_particles": 8},
    "guided-particle-gibbs": {"num_particles": 8},
    "replica-exchange": {"num_rungs": 3},
    "mixed-hmc": {"num_discrete_updates": 5},
}
VARIANTS = [("action-gibbs", {"proposal": "mh"}), ("suffix-mh", {"block_size": 2})]


def cases():
    for name, record in KERNELS.items():
        if record.targets_posterior:
            marks = [pytest.mark.slow] if record.builtin else []
            yield pytest.param(name, SETTINGS.get(name, {}), marks=marks, id=name)
    for name, params in VARIANTS:
        label = ",".join(f"{key}={value}" for key, value in params.items())
        yield pytest.param(name, params, marks=[pytest.mark.slow], id=f"{name}({label})")


# --------------------------------------------------------------------------- the reference


def enumerate_joint(world, horizon, beta):
    """Exact probabilities of every (start, actions, outcomes) cell, indexed by :func:`cell_of`.

    Impossible cells (padding outcomes, starts of probability 0) have probability 0.
    """
    n_states, n_actions, n_outcomes = np.asarray(world.outcome_states).shape
    out_states = np.asarray(world.outcome_states)
    out_probs = np.asarray(world.outcome_probs)
    out_rewards = np.asarray(world.outcome_rewards)
    start_probs = np.asarray(world.start_probs)
    log_w = np.full(n_states * (n_actions * n_outcomes) ** horizon, -np.inf)
    pairs = list(itertools.product(range(n_actions), range(n_outcomes)))
    for start, path in itertools.product(range(n_states), itertools.product(pairs, repeat=horizon)):
        actions, outcomes = (np.array(x) for x in zip(*path, strict=True))
        with np.errstate(divide="ignore"):  # log 0 = -inf: an impossible cell
            log_p, state = np.log(start_probs[start]), start
            for a, k in path:
                log_p += np.log(out_probs[state, a, k]) - np.log(n_actions)
                log_p += beta * out_rewards[state, a, k]
                state = out_states[state, a, k]
        log_w[cell_of(world, start, actions[None], outcomes[None])[0]] = log_p
    with np.errstate(invalid="ignore"):
        probs = np.exp(log_w - np.max(log_w))
    return probs / probs.sum()


def cell_of(world, start, actions, outcomes):
    """The cell index of trajectories: start (n,), actions and outcome indices (n, T)."""
    n_pairs = world.n_actions * int(np.asarray(world.outcome_states).shape[2])
    pair = np.asarray(actions) * (n_pairs // world.n_actions) + np.asarray(outcomes)
    horizon = pair.shape[-1]
    return np.asarray(start) * n_pairs**horizon + pair @ (n_pairs ** np.arange(horizon)[::-1])


def chi_square(counts, expected_probs):
    """Pearson's statistic, its degrees of freedom and p-value; ``inf`` if a count is impossible.

    Cells expected fewer than :data:`MIN_EXPECTED` times are pooled into one.
    """
    n = counts.sum()
    expected = n * expected_probs
    if np.any(counts[expected_probs == 0] > 0):
        return np.inf, 0, 0.0
    big = expected >= MIN_EXPECTED
    observed = np.append(counts[big], counts[~big & (expected_probs > 0)].sum())
    expected = np.append(expected[big], expected[~big].sum())
    keep = expected > 0
    statistic = float(np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep]))
    df = int(keep.sum()) - 1
    return statistic, df, float(stats.chi2.sf(statistic, df))


def last_draws(name, params, world, horizon, beta, seed=0):
    """``NUM_CHAINS`` independent chains from the prior, ``STEPS`` steps each: their last
    (start (n,), actions (n, T), outcomes (n, T))."""
    record = KERNELS[name]
    mcmc = MCMC(
        record.make(pgm_rl.trajectory_model, **params),
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


def assert_joint_matches(world, horizon, beta, start, actions, outcomes, what):
    exact = enumerate_joint(world, horizon, beta)
    counts = np.bincount(cell_of(world, start, actions, outcomes), minlength=exact.size)
    statistic, df, p_value = chi_square(counts, exact)
    assert p_value > ALPHA, (
        f"{what}: the joint law of {len(start)} iid trajectories differs from enumeration "
        f"(chi-square {statistic:.1f} on {df} df, p = {p_value:.2g})"
    )


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize(("name", "params"), list(cases()))
def test_joint_law_of_action_sequences_on_a_deterministic_mdp(name, params):
    world, horizon, beta = DETERMINISTIC, DETERMINISTIC_HORIZON, DETERMINISTIC_BETA
    draws = last_draws(name, params, world, horizon, beta)
    assert_joint_matches(world, horizon, beta, *draws, name)


@pytest.mark.parametrize(("name", "params"), list(cases()))
def test_joint_law_of_start_actions_and_outcomes_on_a_stochastic_mdp(name, params):
    world, horizon, beta = STOCHASTIC, STOCHASTIC_HORIZON, STOCHASTIC_BETA
    draws = last_draws(name, params, world, horizon, beta)
    assert_joint_matches(world, horizon, beta, *draws, name)


@pytest.mark.parametrize(
    ("world", "horizon", "beta"),
    [
        (DETERMINISTIC, DETERMINISTIC_HORIZON, DETERMINISTIC_BETA),
        (STOCHASTIC, STOCHASTIC_HORIZON, STOCHASTIC_BETA),
    ],
    ids=["deterministic", "stochastic"],
)
def test_enumeration_agrees_with_solve(world, horizon, beta):
    """The reference itself: its state marginals are those of :func:`pgm_rl.solve`."""
    exact = enumerate_joint(world, horizon, beta)
    n_pairs = world.n_actions * int(np.asarray(world.outcome_states).shape[2])
    cells = np.arange(exact.size)
    start = cells // n_pairs**horizon
    pairs = (cells[:, None] // n_pairs ** np.arange(horizon)[::-1]) % n_pairs
    actions, outcomes = pairs // (n_pairs // world.n_actions), pairs % (n_pairs // world.n_actions)
    possible = exact > 0
    states, _ = pgm_rl.rollout(world, actions[possible], start[possible], outcomes[possible])
    marginals = np.stack(
        [
            np.bincount(np.asarray(states)[:, t], exact[possible], world.n_states)
            for t in range(horizon + 1)
        ]
    )
    solved = pgm_rl.solve(world, horizon, beta)
    np.testing.assert_allclose(marginals, solved.state_marginals, atol=1e-12)


@pytest.mark.parametrize(
    ("world", "horizon", "beta"),
    [
        (DETERMINISTIC, DETERMINISTIC_HORIZON, DETERMINISTIC_BETA),
        (STOCHASTIC, STOCHASTIC_HORIZON, STOCHASTIC_BETA),
    ],
    ids=["deterministic", "stochastic"],
)
def test_the_joint_check_catches_broken_coupling(world, horizon, beta):
    """A sampler that breaks the coupling between time steps but gets every step right fails.

    The draws of a correct kernel, with each time step's (action, outcome) pair shuffled
    across the chains: every step's law, and so every per-step check, is exactly right; the
    joint is the product of the step marginals, and the check rejects it.
    """
    start, actions, outcomes = last_draws("action-gibbs", {}, world, horizon, beta)
    assert_joint_matches(world, horizon, beta, start, actions, outcomes, "action-gibbs")
    rng = np.random.default_rng(0)
    order = np.stack([rng.permutation(NUM_CHAINS) for _ in range(horizon)], axis=1)
    shuffled_actions = np.take_along_axis(actions, order, axis=0)
    shuffled_outcomes = np.take_along_axis(outcomes, order, axis=0)
    for t in range(horizon):  # each step's pair law is untouched
        np.testing.assert_array_equal(
            np.sort(shuffled_actions[:, t] * 10 + shuffled_outcomes[:, t]),
            np.sort(actions[:, t] * 10 + outcomes[:, t]),
        )
    with pytest.raises(AssertionError, match="differs from enumeration"):
        assert_joint_matches(
            world, horizon, beta, start, shuffled_actions, shuffled_outcomes, "shuffled"
        )
