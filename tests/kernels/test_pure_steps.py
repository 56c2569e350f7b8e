"""The pure steps, unit-tested with stubs and forced inputs (as BlackJAX tests its kernels).

The invariance tests start many independent chains at exact posterior draws and take one
step: a correct kernel leaves the posterior invariant, so the results are again iid exact
draws and their TV to the exact marginals is bounded by what iid draws show.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_grid
from helpers import expected_tv

import pgm_rl
from pgm_rl._sampling import inverse_cdf_sample, multinomial_resample, positive_uniform
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance
from pgm_rl.kernels import (
    action_gibbs,
    particle_gibbs,
    replica_exchange,
    suffix_mh,
    trajectory_mh,
)
from pgm_rl.kernels.base import MHInfo, RegenerationState, init_state

ENV, HORIZON, BETA = random_grid(5, (3, 3)), 4, 0.8
NUM_CHAINS = 20000

STEPS = {
    "suffix-mh": lambda: suffix_mh.build_kernel(ENV, HORIZON),
    "block-mh": lambda: suffix_mh.build_kernel(ENV, HORIZON, block_size=2),
    "trajectory-mh": lambda: trajectory_mh.build_kernel(ENV, HORIZON),
    "action-gibbs": lambda: action_gibbs.build_kernel(ENV, HORIZON),
    "action-gibbs-mh": lambda: action_gibbs.build_kernel(ENV, HORIZON, proposal="mh"),
    "particle-gibbs": lambda: particle_gibbs.build_kernel(ENV, HORIZON, 4),
}


@pytest.mark.parametrize("name", STEPS)
def test_one_step_leaves_the_posterior_invariant(name):
    exact = pgm_rl.solve(ENV, HORIZON, BETA)
    start_key, step_key = jax.random.split(jax.random.key(7))
    draws = exact.sample(start_key, NUM_CHAINS)
    states = jax.vmap(lambda a: init_state(ENV, a))(draws["actions"])
    step = STEPS[name]()
    moved, info = jax.jit(jax.vmap(step, in_axes=(0, 0, None)))(
        jax.random.split(step_key, NUM_CHAINS), states, BETA
    )
    assert float(np.mean(info.accept_prob)) > 0.05  # the step does move
    new_states, rewards = pgm_rl.rollout(ENV, moved.actions)
    np.testing.assert_allclose(moved.ret, np.asarray(rewards).sum(axis=1), rtol=1e-12)
    tv = tv_distance(empirical_state_marginals(new_states, ENV.n_states), exact.state_marginals)
    assert tv.mean() <= 2.0 * expected_tv(exact.state_marginals, NUM_CHAINS)
    # and it does not just return its input
    assert np.mean(np.any(np.asarray(moved.actions) != np.asarray(draws["actions"]), axis=1)) > 0.05


def test_one_step_from_a_wrong_start_is_detected():
    """The invariance check can fail: prior draws moved by one step stay far from exact."""
    exact = pgm_rl.solve(ENV, HORIZON, BETA)
    prior = pgm_rl.solve(ENV, HORIZON, 0.0).sample(jax.random.key(7), NUM_CHAINS)
    tv = tv_distance(
        empirical_state_marginals(prior["states"], ENV.n_states), exact.state_marginals
    )
    assert tv.mean() > 4.0 * expected_tv(exact.state_marginals, NUM_CHAINS)


def test_regeneration_window_masks_the_actions():
    state = init_state(ENV, jnp.array([0, 1, 2, 3]))
    keys = jax.random.split(jax.random.key(0), 500)
    for start, stop in ((1, 3), (0, 4), (3, 4)):
        moved, _ = jax.vmap(
            lambda k, a=start, b=stop: suffix_mh.regenerate(k, state, 0.0, a, b, ENV)
        )(keys)
        actions = np.asarray(moved.actions)
        outside = np.r_[0:start, stop:HORIZON]
        assert np.all(actions[:, outside] == np.asarray(state.actions)[outside])
        assert len(np.unique(actions[:, start:stop])) == ENV.n_actions  # redrawn, all actions seen
    same, info = suffix_mh.regenerate(keys[0], state, BETA, 2, 2, ENV)  # empty window
    np.testing.assert_array_equal(same.actions, state.actions)
    assert float(info.accept_prob) == 1.0


def test_action_gibbs_at_huge_beta_takes_the_best_action():
    env = pgm_rl.GridWorld([[0.0, 0.0, 5.0]], (0, 0))
    step = action_gibbs.build_kernel(env, 3)
    state = init_state(env, jnp.array([2, 2, 2]))  # left into the wall, three times
    for key in jax.random.split(jax.random.key(0), 5):
        state, info = step(key, state, 1e6)
    states, _ = pgm_rl.rollout(env, state.actions)
    assert int(states[-1]) == 2 and float(state.ret) == pytest.approx(5.0 * np.sum(states[1:] == 2))
    assert float(info.accept_prob) == 1.0


def rung_states(actions, ret):
    """Stacked rung states (K,) with the given actions (K, T) and returns (K,)."""
    zeros = jnp.zeros_like(actions)
    return RegenerationState(actions, ret, zeros, zeros[:, 0], jnp.zeros_like(ret))


def stub_step(key, state, beta):
    """A base kernel that never moves: isolates replica exchange's swaps."""
    return state, MHInfo(jnp.ones((), float), jnp.ones((), bool))


def test_replica_exchange_swaps_the_right_pairs():
    betas = jnp.array([1.0, 0.5, 0.25, 0.1])
    # returns increasing with the rung: every swap is uphill for the colder rung (log ratio > 0)
    rungs = rung_states(jnp.arange(4)[:, None] * jnp.ones((4, 2), jnp.int32),
                        jnp.array([0.0, 100.0, 200.0, 300.0]))  # fmt: skip
    step = partial(
        replica_exchange.build_kernel(ENV, 2, base_kernel=stub_step, betas=betas), beta=betas[0]
    )
    state = replica_exchange.ReplicaExchangeState(rungs, jnp.array(0), jnp.array(0.0))
    even, _ = step(jax.random.key(0), state)  # pairs (0, 1) and (2, 3)
    np.testing.assert_array_equal(even.rungs.actions[:, 0], [1, 0, 3, 2])
    assert float(even.swap_accept_prob) == 1.0 and int(even.i) == 1
    odd, _ = step(jax.random.key(0), state._replace(i=jnp.array(1)))  # pair (1, 2)
    np.testing.assert_array_equal(odd.rungs.actions[:, 0], [0, 2, 1, 3])
    # returns decreasing by 1e6 per rung: swapping would cost ~5e5 nats, never accepted
    down = state._replace(rungs=rungs._replace(ret=-1e6 * jnp.arange(4.0)))
    stay, _ = step(jax.random.key(0), down)
    np.testing.assert_array_equal(stay.rungs.actions[:, 0], [0, 1, 2, 3])
    assert float(stay.swap_accept_prob) == 0.0


def test_ladder():
    ladder = replica_exchange.ladder(2.0, 4)
    np.testing.assert_allclose(ladder, 2.0 * np.array([1.0, 0.1, 0.01, 0.001]))


def test_multinomial_resample_with_one_hot_weights():
    log_w = jnp.full(6, -jnp.inf).at[4].set(0.0)
    index = multinomial_resample(jax.random.key(0), log_w, 1000)
    assert index.dtype == jnp.int32 and np.all(np.asarray(index) == 4)


def test_multinomial_resample_frequencies():
    log_w = jnp.log(jnp.array([0.1, 0.2, 0.7]))
    counts = np.bincount(
        np.asarray(multinomial_resample(jax.random.key(1), log_w, 30000)), minlength=3
    )
    np.testing.assert_allclose(counts / 30000, [0.1, 0.2, 0.7], atol=4 * np.sqrt(0.25 / 30000))


def test_inverse_cdf_never_picks_a_zero_probability_category():
    probs = jnp.array([0.0, 0.3, 0.0, 0.7, 0.0])
    u = jnp.array([jnp.finfo(float).tiny, 0.3, 0.3 + 1e-12, 1.0])
    picks = jax.vmap(lambda v: inverse_cdf_sample(v, probs))(u)
    np.testing.assert_array_equal(picks, [1, 1, 3, 3])
    draws = positive_uniform(jax.random.key(0), (10000,), jnp.float64)
    assert float(draws.min()) > 0.0 and float(draws.max()) <= 1.0


def test_replica_exchange_with_two_rungs_tries_the_pair_every_step():
    """One pair: the even/odd alternation would leave odd steps with no pair (swap rate 0/0)."""
    rungs = rung_states(jnp.arange(2)[:, None] * jnp.ones((2, 2), jnp.int32),
                        jnp.array([3.0, 3.0]))  # fmt: skip
    step = partial(
        replica_exchange.build_kernel(ENV, 2, base_kernel=stub_step, betas=[1.0, 0.5]), beta=1.0
    )
    state = replica_exchange.ReplicaExchangeState(rungs, jnp.array(0), jnp.array(0.0))
    for i in range(3):
        state, info = step(jax.random.key(i), state)
        # equal returns: the swap's log ratio is 0, so it is accepted with probability 1
        assert float(state.swap_accept_prob) == 1.0, i
        assert bool(info.is_accepted), i
    np.testing.assert_array_equal(state.rungs.actions[:, 0], [1, 0])  # swapped three times
