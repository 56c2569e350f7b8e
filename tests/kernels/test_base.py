"""The shared kernel machinery: the MH accept step, the NumPyro adapter and the model contract."""

import itertools
import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from conftest import random_grid
from helpers import run_mcmc
from numpyro.infer import MCMC
from stochastic_cases import RANDOM_START, SLIPPERY

import pgm_rl
from pgm_rl.kernels import KERNELS, TrajectoryMH, mh_accept
from pgm_rl.kernels.base import RegenerationState, deterministic_sites_fn, init_state

OURS = [name for name, record in KERNELS.items() if not record.builtin]
# The adapter is shared: the default run checks it through the generic kernel and one
# TrajectoryKernel; every other kernel in the slow run.
ADAPTER_DEFAULT = ("trajectory-mh", "suffix-mh")
ADAPTER_CASES = [
    pytest.param(name, marks=[] if name in ADAPTER_DEFAULT else [pytest.mark.slow], id=name)
    for name in OURS
]
STRUCTURE_KERNELS = [name for name in OURS if name != "trajectory-mh"]


# ----------------------------------------------------------------------------- mh_accept


def test_mh_accept_rejects_nan_and_minus_inf_and_takes_sure_moves():
    keys = jax.random.split(jax.random.key(0), 200)
    for log_ratio, expected in ((jnp.nan, False), (-jnp.inf, False), (0.0, True), (5.0, True)):
        chosen, info = jax.vmap(lambda k, r=log_ratio: mh_accept(k, r, 1, 0))(keys)
        assert np.all(np.asarray(info.is_accepted) == expected), log_ratio
        assert np.all(np.asarray(chosen) == int(expected))
        assert np.all(np.asarray(info.accept_prob) == float(expected))


def test_mh_accept_rate_is_the_ratio():
    keys = jax.random.split(jax.random.key(1), 20000)
    _, info = jax.vmap(lambda k: mh_accept(k, math.log(0.3), 1, 0))(keys)
    rate = float(np.mean(info.is_accepted))
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 20000)
    np.testing.assert_allclose(info.accept_prob, 0.3)


def test_mh_accept_keeps_pytree_structure():
    proposal = {"a": jnp.ones(3), "b": jnp.array(2)}
    current = {"a": jnp.zeros(3), "b": jnp.array(1)}
    chosen, _ = mh_accept(jax.random.key(0), jnp.inf, proposal, current)
    np.testing.assert_array_equal(chosen["a"], 1.0)
    chosen, _ = mh_accept(jax.random.key(0), -jnp.inf, proposal, current)
    assert int(chosen["b"]) == 1


def test_init_state_return_is_the_rollout_sum():
    env = random_grid(3, (3, 4))
    actions = jnp.array([0, 3, 3, 1, 4])
    state = init_state(env, actions)
    _, rewards = pgm_rl.rollout(env, actions)
    assert isinstance(state, RegenerationState) and state.actions.dtype == jnp.int32
    assert float(state.ret) == pytest.approx(float(rewards.sum()))


# ----------------------------------------------------------------------------- the adapter

ENV, HORIZON, BETA = random_grid(1), 3, 0.5


@pytest.mark.parametrize("name", ADAPTER_CASES)
def test_init_params_batched_over_chains(name):
    """NumPyro batches init_params along the chains: vectorized chains take them (this
    crashed) and give the draws the sequential chains give from the same starts."""
    start = {"actions": np.array([[0, 1, 2], [3, 4, 0]], np.int32)}
    draws = []
    for chain_method in ("vectorized", "sequential"):
        kernel = KERNELS[name].make(pgm_rl.trajectory_model)
        mcmc = MCMC(kernel, num_warmup=0, num_samples=4, num_chains=2,
                    chain_method=chain_method, progress_bar=False)  # fmt: skip
        mcmc.run(jax.random.key(0), ENV, HORIZON, BETA, init_params=start)
        draws.append(np.asarray(mcmc.get_samples(group_by_chain=True)["actions"]))
    assert draws[0].shape == (2, 4, HORIZON)
    np.testing.assert_array_equal(draws[0], draws[1])


@pytest.mark.parametrize("name", ADAPTER_CASES)
def test_init_params_are_used(name):
    """With beta so large that leaving the best path is never accepted, chains stay put."""
    env = pgm_rl.GridWorld([[0.0, 1.0]], (0, 0))
    best = np.array([[3, 4], [3, 4]], np.int32)  # right, then stay on the +1 cell
    kernel = KERNELS[name].make(pgm_rl.trajectory_model)
    if name in ("action-gibbs", "particle-gibbs", "stepwise-mh"):
        pytest.skip("Gibbs-type kernels redraw from the conditional; checked by the MH kernels")
    mcmc = MCMC(kernel, num_warmup=0, num_samples=3, num_chains=2, chain_method="vectorized",
                progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(0), env, 2, 1e6, init_params={"actions": best})
    states = np.asarray(mcmc.get_samples()["states"])
    assert np.all(states[:, 1:] == 1)


@pytest.mark.parametrize("name", ADAPTER_CASES)
def test_finished_mcmc_pickles_and_runs_again(name):
    record = KERNELS[name]
    mcmc = run_mcmc(record.make(pgm_rl.trajectory_model), ENV, HORIZON, BETA, warmup=5, draws=10,
                    chains=2, extra_fields=record.extra_fields)  # fmt: skip
    again = pickle.loads(pickle.dumps(mcmc))
    for site in ("actions", "states", "rewards"):
        np.testing.assert_array_equal(again.get_samples()[site], mcmc.get_samples()[site])
    again.run(jax.random.key(0), ENV, HORIZON, BETA, extra_fields=record.extra_fields)
    np.testing.assert_array_equal(again.get_samples()["actions"], mcmc.get_samples()["actions"])


@pytest.mark.parametrize("name", [name for name in OURS if name != "stepwise-mh"])
def test_postprocessing_traces_no_model(name):
    """Issue 21: NumPyro applies ``postprocess_fn`` to every step's ``z`` in its loop; it gives
    the model's deterministic sites (the same values) without tracing the model again, which
    it did at every step before (the model was called once more per postprocessing)."""
    calls = []

    def counted(env, horizon, beta):
        calls.append(None)
        traj = pgm_rl.trajectory_model(env, horizon, beta)
        if name == "trajectory-mh":  # its own deterministic sites ride along in its state
            numpyro.deterministic("first", traj.states[1])

    args = (ENV, HORIZON, BETA)
    kernel = KERNELS[name].make(counted)
    keys = jax.random.split(jax.random.key(0), 2)
    z = kernel.init(keys, 0, None, args, {}).z  # two vectorized chains
    postprocess = kernel.postprocess_fn(args, {})
    before = len(calls)
    sites = postprocess(z)
    assert len(calls) == before
    latent = {"actions": z["actions"]}
    expected = jax.vmap(deterministic_sites_fn(counted, args, {}))(latent)
    assert sorted(sites) == sorted(expected)
    for site, value in expected.items():
        np.testing.assert_array_equal(sites[site], value)


# The kernels whose state is a RegenerationState (StepwiseMH carries its own kept values); the
# Gibbs-like two in the default run, the rest in the slow one.
REGENERATION_CASES = [
    pytest.param(
        name, marks=[] if name in ("action-gibbs", "suffix-mh") else [pytest.mark.slow], id=name
    )
    for name in STRUCTURE_KERNELS
    if name != "stepwise-mh"
]


@pytest.mark.parametrize("name", REGENERATION_CASES)
def test_postprocessing_is_the_identity_on_the_carried_rollout(name):
    """Issue 21: NumPyro applies ``postprocess_fn`` to every step (warm-up and thinned-away steps
    included). The kernel state carries the rollout its step computes, so postprocessing does no
    rollout (no scan: before, a rollout of the latent sites at every step) and gives the same
    values: ``z``'s states and rewards are the rollout of its latent sites after some steps."""
    args = (RANDOM_START, 4, 1.0)  # random start and dynamics: every latent site
    kernel = KERNELS[name].make(pgm_rl.trajectory_model)
    state = kernel.init(jax.random.split(jax.random.key(0), 2), 0, None, args, {})
    for _ in range(3):
        state = kernel.sample(state, args, {})
    postprocess = jax.vmap(kernel.postprocess_fn(args, {}))
    assert "scan" not in str(jax.make_jaxpr(postprocess)(state.z))
    sites = postprocess(state.z)
    states, rewards = pgm_rl.rollout(
        RANDOM_START, sites["actions"], sites["start"], sites["outcomes"]
    )
    np.testing.assert_array_equal(sites["states"], states)
    np.testing.assert_array_equal(sites["rewards"], rewards)


def test_a_state_built_by_hand_gets_its_rollout():
    """A :class:`RegenerationState` without ``states`` and ``rewards`` (the five fields it had
    before issue 21) still steps: the step fills in its rollout."""
    actions = jnp.array([0, 1, 2, 3], jnp.int32)
    zeros = jnp.zeros(4, jnp.int32)
    _, rewards = pgm_rl.rollout(SLIPPERY, actions, jnp.array(0), zeros)
    state = RegenerationState(actions, jnp.sum(rewards), zeros, jnp.array(0), jnp.array(0.0))
    step = KERNELS["suffix-mh"].build_kernel(SLIPPERY, 4, None)
    moved, _ = step(jax.random.key(0), state, 1.0)
    states, rewards = pgm_rl.rollout(SLIPPERY, moved.actions, moved.start, moved.outcomes)
    np.testing.assert_array_equal(moved.states, states)
    np.testing.assert_array_equal(moved.rewards, rewards)


def test_mean_accept_prob_restarts_after_warmup():
    """Like NumPyro's HMC: the running mean covers the kept draws only."""
    mcmc = run_mcmc(TrajectoryMH(pgm_rl.trajectory_model), ENV, HORIZON, BETA, warmup=50,
                    draws=30, chains=1, extra_fields=("accept_prob", "mean_accept_prob"))  # fmt: skip
    fields = mcmc.get_extra_fields()
    kept = np.asarray(fields["accept_prob"])
    np.testing.assert_allclose(fields["mean_accept_prob"][-1], kept.mean(), rtol=1e-10)
    np.testing.assert_allclose(fields["mean_accept_prob"][0], kept[0], rtol=1e-10)
    assert float(mcmc.last_state.i) == 80


# ----------------------------------------------------------------------------- model contract

GRID = pgm_rl.GridWorld([[0.0, 1.0], [-1.0, 2.0]], (0, 0))


def with_penalty(env, horizon, beta):
    with numpyro.handlers.trace() as model_trace:
        pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("penalty", jnp.where(model_trace["actions"]["value"][0] == 0, -50.0, 0.0))


def brute_force_first_up(env, horizon, beta):
    """P(first action is up) under prior * exp(beta * return) * penalty, by enumeration."""
    actions = np.array(list(itertools.product(range(env.n_actions), repeat=horizon)))
    _, rewards = pgm_rl.rollout(env, actions)
    log_w = beta * np.asarray(rewards).sum(axis=1) - 50.0 * (actions[:, 0] == 0)
    w = np.exp(log_w - log_w.max())
    return float(w[actions[:, 0] == 0].sum() / w.sum())


@pytest.mark.parametrize("name", STRUCTURE_KERNELS)
def test_structure_kernels_honour_a_factor_site(name):
    """Issue 18: the factor is in every kernel's target (it refused them before); P(first
    action up) is 0.000 with the penalty, 0.19 if it were ignored. StepwiseMH targets per-step
    marginals, where a trajectory-level term means nothing: it refuses, naming the site."""
    mcmc = MCMC(KERNELS[name].make(with_penalty), num_warmup=20, num_samples=200,
                num_chains=2, chain_method=KERNELS[name].chain_method, progress_bar=False)  # fmt: skip
    if name == "stepwise-mh":
        with pytest.raises(ValueError, match=r"StepwiseMH.*'penalty'"):
            mcmc.run(jax.random.key(0), GRID, 3, 0.5)
        return
    mcmc.run(jax.random.key(0), GRID, 3, 0.5)
    assert np.mean(np.asarray(mcmc.get_samples()["actions"])[:, 0] == 0) <= 0.002


@pytest.mark.parametrize("name", STRUCTURE_KERNELS)
def test_structure_kernels_refuse_other_latent_sites(name):
    def with_latent(env, horizon, beta):
        pgm_rl.trajectory_model(env, horizon, beta)
        numpyro.sample("goal", numpyro.distributions.Bernoulli(0.5))

    mcmc = MCMC(KERNELS[name].make(with_latent), num_warmup=1, num_samples=1, progress_bar=False)
    with pytest.raises(ValueError, match=r"'goal' \(latent\).*TrajectoryMH"):
        mcmc.run(jax.random.key(0), GRID, 3, 0.5)


@pytest.mark.parametrize("name", STRUCTURE_KERNELS)
def test_structure_kernels_refuse_changed_sites(name):
    def scaled(env, horizon, beta):
        with numpyro.handlers.scale(scale=2.0):
            pgm_rl.trajectory_model(env, horizon, beta)

    def conditioned(env, horizon, beta):
        with numpyro.handlers.condition(data={"actions": jnp.zeros(horizon, jnp.int32)}):
            pgm_rl.trajectory_model(env, horizon, beta)

    for model in (scaled, conditioned):
        mcmc = MCMC(KERNELS[name].make(model), num_warmup=1, num_samples=1, progress_bar=False)
        with pytest.raises(ValueError, match="changes its site"):
            mcmc.run(jax.random.key(0), GRID, 3, 0.5)


def test_trajectory_mh_accounts_for_extra_sites():
    """The issue's probe: P(first action up) is 0.000 with the penalty (0.19 if ignored)."""
    exact = brute_force_first_up(GRID, 3, 0.5)
    assert exact < 1e-6
    mcmc = run_mcmc(TrajectoryMH(with_penalty), GRID, 3, 0.5, warmup=200, draws=1000)
    first = np.asarray(mcmc.get_samples()["actions"])[:, 0]
    assert np.mean(first == 0) <= 0.002
    unpenalised = pgm_rl.solve(GRID, 3, 0.5).action_marginals[0, 0]
    assert unpenalised > 0.1  # what a kernel ignoring the factor gives


def test_plain_wrappers_are_accepted():
    def wrapper(env, horizon):
        pgm_rl.trajectory_model(env, horizon, 0.5)

    mcmc = MCMC(KERNELS["suffix-mh"].make(wrapper), num_warmup=1, num_samples=2,
                progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(0), GRID, 3)
    assert mcmc.get_samples()["actions"].shape == (2, 3)
