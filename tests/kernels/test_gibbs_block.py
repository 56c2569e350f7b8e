"""A model with a latent beside the trajectory (issue 18): NumPyro's ``Gibbs`` runs a pgm_rl
kernel on the trajectory given the other sites and NUTS on them given the trajectory.

The model: an unknown penalty weight ``theta ~ Normal(0, 1)`` on revisits, observed through
``Normal(theta, 0.5)`` at 1.0, on a 3x3 grid (T = 4). Reference: every action sequence times
a quadrature over theta (2001 points). 400 chains (``jax.vmap``), their last draws iid.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, Gibbs
from scipy.special import logsumexp

import pgm_rl
from pgm_rl.kernels import KERNELS

GRID = pgm_rl.GridWorld(
    np.array([[0.0, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 1.0]]) - 0.1, (0, 0)
)
HORIZON, BETA = 4, 1.0


def revisits(states):
    same = states[:, None] == states[None, :]
    return jnp.sum(jnp.any(jnp.triu(same, 1), axis=0))


def model(env, horizon, beta):
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("revisits", -jax.nn.softplus(theta) * revisits(traj.states))
    numpyro.sample("obs", dist.Normal(theta, 0.5), obs=1.0)


def reference():
    """E[theta] and the exact state marginals (T + 1, S), by enumeration and quadrature."""
    actions = np.array(list(itertools.product(range(5), repeat=HORIZON)))
    states, rewards = pgm_rl.rollout(GRID, actions)
    counts = np.asarray(jax.vmap(revisits)(states))
    theta = np.linspace(-6, 6, 2001)
    log_w = (
        BETA * np.asarray(rewards).sum(1)[:, None]
        - np.logaddexp(0.0, theta)[None, :] * counts[:, None]
        - 0.5 * theta**2
        - 0.5 * ((1.0 - theta) / 0.5) ** 2
    )
    weights = np.exp(log_w - logsumexp(log_w))
    mean_theta = float(weights.sum(0) @ theta)
    path = weights.sum(1)
    marginals = np.stack(
        [np.bincount(np.asarray(states)[:, t], path, 9) for t in range(HORIZON + 1)]
    )
    return mean_theta, marginals


@pytest.mark.parametrize("name", ["suffix-mh", "action-gibbs", "particle-gibbs"])
def test_gibbs_with_a_pgm_rl_block_and_nuts(name):
    chains = 400
    params = {"num_particles": 8} if name == "particle-gibbs" else {}
    kernel = Gibbs([(KERNELS[name].make(model, **params), ["actions"]), (NUTS(model), None)])
    mcmc = MCMC(kernel, num_warmup=60, num_samples=1, num_chains=chains, chain_method=jax.vmap,
                progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(0), GRID, HORIZON, BETA)
    samples = mcmc.get_samples()
    mean_theta, marginals = reference()
    theta = np.asarray(samples["theta"])
    assert abs(theta.mean() - mean_theta) < 4 * theta.std() / np.sqrt(chains)
    states = np.asarray(samples["states"])
    for t in range(1, HORIZON + 1):
        freq = np.bincount(states[:, t], minlength=9) / chains
        se = np.sqrt(marginals[t] * (1 - marginals[t]) / chains) + 1e-12
        assert np.all(np.abs(freq - marginals[t]) < 4.5 * se + 1.0 / chains), (
            t,
            freq,
            marginals[t],
        )


def test_the_refusal_names_the_gibbs_composition():
    with pytest.raises(ValueError, match=r"'theta' \(latent\).*numpyro.infer.Gibbs"):
        MCMC(KERNELS["suffix-mh"].make(model), num_warmup=1, num_samples=1,
             progress_bar=False).run(jax.random.key(0), GRID, HORIZON, BETA)  # fmt: skip
