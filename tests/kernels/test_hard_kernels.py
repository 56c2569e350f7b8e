"""SuffixMH, ParticleGibbs and ReplicaExchange against exact inference, and on a multimodal case."""

import jax
import numpy as np
import pytest
from conftest import random_grid
from helpers import occupancy_ess
from numpyro.infer import MCMC

import pgm_rl
from pgm_rl.diagnostics import compare_to_exact, empirical_state_marginals, to_datatree, tv_distance
from pgm_rl.kernels import (
    GuidedParticleGibbs,
    ParticleGibbs,
    ReplicaExchange,
    SuffixMH,
    TrajectoryMH,
)

MODEL = pgm_rl.trajectory_model


def run(
    kernel, env, horizon, beta, num_samples=2000, key=0, chain_method="vectorized", chains=4, **kw
):
    mcmc = MCMC(
        kernel,
        num_warmup=min(500, num_samples),
        num_samples=num_samples,
        num_chains=chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(key), env, horizon, beta, **kw)
    return mcmc


def mean_tv(mcmc, post):
    states = mcmc.get_samples()["states"]
    return tv_distance(
        empirical_state_marginals(states, post.mdp.n_states), post.state_marginals
    ).mean()


def assert_matches(mcmc, post):
    """The chains agree (occupancy R-hat) and the library's own check against exact inference
    passes: per-indicator effective sizes, thresholds at mean + 4 sd of exact iid replicates
    (a false-alarm rate of about 6e-5 per quantity; tests/test_diagnostics_health.py shows it
    catches wrong samplers)."""
    states = np.asarray(mcmc.get_samples(group_by_chain=True)["states"])
    _, r_hat = occupancy_ess(states, post.mdp.n_states)
    assert r_hat < 1.05
    tree = to_datatree(mcmc, post.mdp, post)
    comparison = compare_to_exact(tree, post, key=jax.random.key(0))
    assert not comparison["disagrees"], comparison


KERNELS = {
    "suffix": lambda: SuffixMH(MODEL),
    "particle-gibbs": lambda: ParticleGibbs(MODEL, num_particles=16),
    "replica-exchange": lambda: ReplicaExchange(MODEL, num_rungs=3),
}
SLOW_KERNELS = {
    "block": lambda: SuffixMH(MODEL, block_size=2),
    "re-trajectory-mh": lambda: ReplicaExchange(MODEL, base_kernel="trajectory-mh", num_rungs=3),
    "re-particle-gibbs": lambda: ReplicaExchange(
        MODEL, base_kernel=ParticleGibbs(MODEL, num_particles=32), num_rungs=3
    ),
    "re-action-gibbs": lambda: ReplicaExchange(MODEL, base_kernel="action-gibbs", num_rungs=3),
}


@pytest.mark.slow  # the default settings are checked by tests/kernels/test_registry.py
@pytest.mark.parametrize("name", KERNELS)
def test_matches_exact(name, small_problem):
    env, horizon, beta = small_problem
    mcmc = run(KERNELS[name](), env, horizon, beta, extra_fields=("accept_prob",))
    assert_matches(mcmc, pgm_rl.solve(env, horizon, beta))
    accept = mcmc.get_extra_fields()["accept_prob"]
    assert accept.shape == (8000,) and 0.05 < float(accept.mean()) <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_KERNELS)
def test_matches_exact_more(name):
    env, horizon, beta = random_grid(2), 6, 0.3
    mcmc = run(SLOW_KERNELS[name](), env, horizon, beta)
    assert_matches(mcmc, pgm_rl.solve(env, horizon, beta))


@pytest.mark.slow  # tests/kernels/test_base.py compares the chain methods from given starts
@pytest.mark.parametrize("name", KERNELS)
def test_sequential_chains_give_the_vectorized_draws(name, small_problem):
    """Same key -> same draws, whether the chains run vectorized or one after another."""
    env, horizon, beta = small_problem
    draws = [
        run(KERNELS[name](), env, horizon, beta, 10, 3, method, chains=2).get_samples()
        for method in ("vectorized", "sequential")
    ]
    assert draws[0]["actions"].shape == (20, horizon)
    np.testing.assert_array_equal(draws[0]["actions"], draws[1]["actions"])
    np.testing.assert_array_equal(draws[1]["states"][:, 0], env.start_state)


def test_replica_exchange_reports_swaps(small_problem):
    env, horizon, beta = small_problem
    mcmc = run(
        ReplicaExchange(MODEL, betas=[beta, beta / 4, 0.0]),
        env,
        horizon,
        beta,
        200,
        extra_fields=("accept_prob", "kernel_state.swap_accept_prob"),
    )
    swap = mcmc.get_extra_fields()["kernel_state.swap_accept_prob"]
    assert swap.shape == (800,) and 0.0 < float(swap.mean()) < 1.0


def test_bad_arguments(small_problem):
    env, horizon, beta = small_problem
    with pytest.raises(ValueError, match="block_size"):
        SuffixMH(MODEL, block_size=0)
    with pytest.raises(TypeError, match="block_size"):
        SuffixMH(MODEL, block_size=1.5)
    with pytest.raises(ValueError, match="num_particles"):
        ParticleGibbs(MODEL, num_particles=1)
    with pytest.raises(TypeError, match="num_particles"):
        ParticleGibbs(MODEL, num_particles="8")
    with pytest.raises(ValueError, match="base_kernel"):
        ReplicaExchange(MODEL, base_kernel="nuts")
    with pytest.raises(ValueError, match="base_kernel"):
        ReplicaExchange(MODEL, base_kernel="stepwise-mh")  # targets another distribution
    with pytest.raises(TypeError, match="base_kernel"):
        ReplicaExchange(MODEL, base_kernel=object())
    with pytest.raises(ValueError, match="num_rungs"):
        ReplicaExchange(MODEL, num_rungs=1)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ReplicaExchange(MODEL, betas=[0.1, 0.5])
    with pytest.raises(ValueError, match=r"betas\[0\] must equal"):
        run(ReplicaExchange(MODEL, betas=[2 * beta, 0.0]), env, horizon, beta, 5)


def corridors():
    """Two corridors around a wall: reward = column index, wall cells -10, start (2, 0).

    Going right pays; the wall (rows 1-3, columns 1-5) costs beta * 10 per cell, so the
    posterior splits into the top and the bottom corridor, the top one 1 worse at (0, 3):
    exact P(top) = 0.27. Moving between the modes one action at a time crosses the wall.
    """
    grid = np.tile(np.arange(7.0), (5, 1))
    grid[1:4, 1:6] = -10.0
    grid[0, 3] -= 1.0
    return pgm_rl.GridWorld(grid, (2, 0)), 10, 1.0


def top_fraction(states):
    return float(np.mean(np.any(np.asarray(states) // 7 == 0, axis=-1)))


@pytest.mark.slow
def test_multimodal_particle_gibbs_mixes_where_local_kernels_stick():
    """Budget: 4 chains. ParticleGibbs(256 particles) gets 1000 draws; TrajectoryMH 20x and
    ActionGibbs 10x as many, at least as much wall-clock (benchmarks/bench_hard.py)."""
    from pgm_rl.kernels.action_gibbs import ActionGibbs

    env, horizon, beta = corridors()
    post = pgm_rl.solve(env, horizon, beta)
    exact_top = top_fraction(post.sample(jax.random.key(0), 20000)["states"])
    assert 0.2 < exact_top < 0.8

    best = run(ParticleGibbs(MODEL, num_particles=256), env, horizon, beta, 1000)
    assert mean_tv(best, post) <= 0.05
    assert abs(top_fraction(best.get_samples()["states"]) - exact_top) < 0.05
    for kernel, draws in ((TrajectoryMH(MODEL), 20000), (ActionGibbs(MODEL), 10000)):
        stuck = run(kernel, env, horizon, beta, draws)
        assert mean_tv(stuck, post) > 0.05


def test_guided_kernel_builds_inside_a_jitted_function(small_problem):
    """The guided kernel computes its proposal from the concrete world even when NumPyro's
    init runs under jit (benchmarks/_runner.py): it used to fail with a tracer error."""
    env, horizon, beta = small_problem
    kernel = GuidedParticleGibbs(MODEL, num_particles=8)
    args = (env, horizon, beta)

    def one_step(key):
        state = kernel.init(key, 1, None, args, {})
        return kernel.sample(state, args, {}).z["actions"]

    actions = jax.jit(one_step)(jax.random.key(0))
    assert actions.shape == (horizon,)
    assert 0 <= int(actions.min()) and int(actions.max()) < env.n_actions
