"""A reward machine two ways (issue 18, item 4): as a trajectory-level factor on the world's own
model (:func:`pgm_rl.envs.machine_rewards`) and as the product MDP
(:func:`pgm_rl.envs.with_reward_machine`). They are one distribution: the exact identity by
enumeration, the same draws from SuffixMH for the same key, and every kernel's draws of the
factor model against the product's exact marginals projected on the world's states.
"""

import itertools

import jax
import numpy as np
import numpyro
import pytest
from numpyro.infer import MCMC
from scipy import stats
from scipy.special import logsumexp

import pgm_rl
from pgm_rl.envs import GridWorld, RewardMachine, machine_rewards, with_reward_machine
from pgm_rl.kernels import KERNELS
from pgm_rl.model import OutcomeIndices

# "visit A, then B; C before B fails" on a 3x3 grid: A pays 1, B 3, C -2 (a sink, not done).
MACHINE = RewardMachine(
    {(0, "A"): (1, 1.0), (1, "B"): (2, 3.0), (0, "C"): (3, -2.0), (1, "C"): (3, -2.0)},
    terminal=[2],
)
GRID = GridWorld(np.full((3, 3), -0.1), (0, 0))
LABELS = ["", "", "A", "", "C", "", "", "", "B"]
HORIZON, BETA = 6, 1.0


def machine_model(env, horizon, beta, labels=tuple(LABELS)):
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("task", beta * machine_rewards(MACHINE, labels, traj.states, env).sum())


def projected(posterior, product):
    """The product's exact state marginals summed over machine states: (T + 1, S)."""
    base = np.asarray(product.base_state(np.arange(product.n_states)))
    return np.stack(
        [np.bincount(base, w, product.base.n_states) for w in posterior.state_marginals]
    )


@pytest.mark.parametrize("slip", [0.0, 0.2])
def test_the_factor_model_is_the_product_exactly(slip):
    """Enumerate every (actions, outcomes) path of the world with the factor; compare log Z and
    the state marginals with the product's exact ones (1e-10)."""
    grid = GridWorld(np.full((3, 3), -0.1), (0, 0), slip=slip, terminal=[(2, 1)])
    horizon = 4 if slip == 0.0 else 3
    product = with_reward_machine(grid, MACHINE, LABELS)
    n_outcomes = grid.n_outcomes
    paths = np.array(list(itertools.product(range(5 * n_outcomes), repeat=horizon)))
    actions, outcomes = paths // n_outcomes, paths % n_outcomes
    states, rewards = pgm_rl.rollout(grid, actions, np.zeros(len(paths), int), outcomes)
    log_p = OutcomeIndices(grid, 0, actions).log_prob(outcomes).sum(-1)
    task = machine_rewards(MACHINE, LABELS, states, grid).sum(-1)
    log_w = np.asarray(log_p + BETA * (rewards.sum(-1) + task)) - horizon * np.log(5)
    exact = pgm_rl.solve(product, horizon, BETA)
    assert logsumexp(log_w) == pytest.approx(float(exact.log_z), abs=1e-10)
    weights = np.exp(log_w - logsumexp(log_w))
    marginals = np.stack(
        [np.bincount(np.asarray(states)[:, t], weights, 9) for t in range(horizon + 1)]
    )
    np.testing.assert_allclose(marginals, projected(exact, product), atol=1e-10)


def test_suffix_mh_draws_the_same_paths_both_ways():
    """Same key, same proposals, same acceptance ratio (up to rounding): the same draws."""
    product = with_reward_machine(GRID, MACHINE, LABELS)
    runs = []
    for model, env in ((machine_model, GRID), (pgm_rl.trajectory_model, product)):
        mcmc = MCMC(KERNELS["suffix-mh"].make(model), num_warmup=50, num_samples=200,
                    progress_bar=False)  # fmt: skip
        mcmc.run(jax.random.key(3), env, HORIZON, BETA)
        runs.append(np.asarray(mcmc.get_samples()["actions"]))
    np.testing.assert_array_equal(*runs)


NUM_CHAINS, STEPS = 1500, 40
# Independence proposals from the prior accept rarely here (the machine pays up to 4 beta):
# more steps before the last draw is a draw from the target.
KERNEL_STEPS = {"trajectory-mh": 400}
SETTINGS = {
    "particle-gibbs": {"num_particles": 8},
    "guided-particle-gibbs": {"num_particles": 8},
    "replica-exchange": {"num_rungs": 3},
    "mixed-hmc": {"num_discrete_updates": 5},
}
DEFAULT = ("suffix-mh", "guided-particle-gibbs")


def kernel_cases():
    for name, record in KERNELS.items():
        if record.targets_posterior:
            marks = [] if name in DEFAULT else [pytest.mark.slow]
            yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(kernel_cases()))
def test_every_kernel_on_the_factor_model_matches_the_product(name):
    """1500 independent chains (last draws, iid): each occupancy frequency against the product's
    exact marginal, an exact binomial test per (step, cell), Bonferroni at 1e-3 overall."""
    record = KERNELS[name]
    steps = KERNEL_STEPS.get(name, STEPS)
    mcmc = MCMC(record.make(machine_model, **SETTINGS.get(name, {})), num_warmup=steps,
                num_samples=1, num_chains=NUM_CHAINS, chain_method=record.chain_method,
                progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(0), GRID, HORIZON, BETA)
    states = np.asarray(mcmc.get_samples()["states"])
    exact = projected(pgm_rl.solve(with_reward_machine(GRID, MACHINE, LABELS), HORIZON, BETA),
                      with_reward_machine(GRID, MACHINE, LABELS))  # fmt: skip
    counts = np.stack([np.bincount(states[:, t], minlength=9) for t in range(HORIZON + 1)])
    tested = (exact > 0) & (exact < 1)
    assert not np.any(counts[exact == 0]), f"{name} visits cells the posterior cannot"
    p_values = [
        stats.binomtest(int(k), NUM_CHAINS, float(p)).pvalue
        for k, p in zip(counts[tested], exact[tested], strict=True)
    ]
    assert min(p_values) > 1e-3 / len(p_values), (
        f"{name}: an occupancy frequency is off (smallest p {min(p_values):.2g} over "
        f"{len(p_values)} tests); largest |freq - exact| "
        f"{np.max(np.abs(counts / NUM_CHAINS - exact)):.3f}"
    )
