"""NumPyro's built-in discrete kernels on the unchanged trajectory_model, measured against exact."""

import json
import subprocess
import sys
import textwrap

import arviz_stats
import jax
import numpy as np
import pytest
from conftest import random_grid
from numpyro.infer import HMC, MCMC, NUTS, DiscreteHMCGibbs, MixedHMC

import pgm_rl
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance

BUILTINS = {
    "discrete-hmc-gibbs": lambda: DiscreteHMCGibbs(NUTS(pgm_rl.trajectory_model)),
    "mixed-hmc": lambda: MixedHMC(
        HMC(pgm_rl.trajectory_model, trajectory_length=1.2), num_discrete_updates=20
    ),
}


def run_builtin(name, env, horizon, beta, num_warmup, num_samples, num_chains=4, seed=0):
    mcmc = MCMC(
        BUILTINS[name](),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=jax.vmap,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), env, horizon, beta)
    return mcmc


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_runs_on_trajectory_model_with_vmapped_chains(name):
    env, horizon = random_grid(0), 3
    mcmc = run_builtin(name, env, horizon, 0.5, num_warmup=10, num_samples=20, num_chains=2)
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["actions"].shape == (2, 20, horizon)
    states, rewards = pgm_rl.rollout(env, samples["actions"])
    np.testing.assert_array_equal(samples["states"], states)
    np.testing.assert_array_equal(samples["rewards"], rewards)


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_refuses_vectorized_chains(name):
    mcmc = MCMC(
        BUILTINS[name](),
        num_warmup=1,
        num_samples=1,
        num_chains=2,
        progress_bar=False,
        chain_method="vectorized",
    )
    # DiscreteHMCGibbs says "use ... jax.vmap"; MixedHMC fails inside jax.random.split.
    with pytest.raises(ValueError, match=r"chain_method|jax\.vmap"):
        mcmc.run(jax.random.key(0), random_grid(0), 2, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_matches_exact_posterior(name):
    env, horizon, beta = random_grid(0), 5, 0.25
    mcmc = run_builtin(name, env, horizon, beta, num_warmup=500, num_samples=2000)
    samples = mcmc.get_samples(group_by_chain=True)
    exact = pgm_rl.solve(env, horizon, beta)
    tv = tv_distance(
        empirical_state_marginals(samples["states"], env.n_states), exact.state_marginals
    )
    returns = np.asarray(samples["rewards"]).sum(axis=-1)
    assert tv.mean() <= 0.03
    assert arviz_stats.rhat(returns) < 1.05


# Runs in float32 (NumPyro's default). In numpyro 0.22 the modified Gibbs proposal's MH
# correction log(exp(w) - expm1(pe - pe_new)) overflows once a move gains more than ~88 nats,
# turns NaN and is rejected, so no chain can step onto the goal (each step there gains
# beta * 1e4 = 500): R-hat 1.000 and ESS in the thousands, yet a mean return of -44 against
# the exact 109957. That is NumPyro's bug, not ours: this test states what a correct sampler
# does and is a non-strict xfail, so a NumPyro fix turns it into an XPASS, not a CI failure.
MODIFIED_GIBBS_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    from numpyro.infer import MCMC, NUTS, DiscreteHMCGibbs
    import pgm_rl
    from pgm_rl.diagnostics import empirical_state_marginals, tv_distance

    env, horizon, beta = pgm_rl.GridWorld.notebook(), 20, 0.05
    kernel = DiscreteHMCGibbs(NUTS(pgm_rl.trajectory_model), modified=True)
    mcmc = MCMC(kernel, num_warmup=1000, num_samples=2000, num_chains=4,
                chain_method=jax.vmap, progress_bar=False)
    mcmc.run(jax.random.key(0), env, horizon, beta)
    samples = mcmc.get_samples(group_by_chain=True)
    exact = pgm_rl.solve(env, horizon, beta)
    tv = tv_distance(empirical_state_marginals(samples["states"], env.n_states),
                     exact.state_marginals)
    print(json.dumps({"x64": bool(jax.config.jax_enable_x64), "tv": float(tv.mean())}))
    """
)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False, reason="numpyro 0.22: DiscreteHMCGibbs(modified=True) overflows in float32"
)
def test_modified_gibbs_reaches_the_goal_in_float32():
    result = subprocess.run(
        [sys.executable, "-c", MODIFIED_GIBBS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert not measured["x64"]
    assert measured["tv"] < 0.1  # numpyro 0.22 gives > 0.5 (the old test pinned that)
