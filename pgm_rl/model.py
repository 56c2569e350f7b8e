"""The control-as-inference trajectory posterior as a NumPyro model.

p(a_0..a_{T-1} | O = 1) ∝ ∏_t (1/A) · exp(beta · r(s_t, a_t))
"""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import seed, trace

from pgm_rl._checks import check_beta, check_horizon
from pgm_rl.dynamics import rollout
from pgm_rl.envs import TabularMDP


def trajectory_model(env, horizon, beta):
    """NumPyro model of optimal trajectories under a uniform action prior.

    Sites: ``"actions"`` (T,) drawn in ``plate("time", T)`` from a uniform Categorical
    (given by ``probs``: NumPyro then samples by inverse CDF, ~10x faster than Gumbel-max);
    deterministic ``"states"`` (T + 1,) and ``"rewards"`` (T,); factor ``"optimality"``
    = ``beta * sum(rewards)``, the log-likelihood of the optimality variables O_t = 1.

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T.
    beta : float
        Inverse temperature, >= 0.
    """
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = check_beta(beta)
    with numpyro.plate("time", horizon):
        actions = numpyro.sample(
            "actions",
            dist.Categorical(probs=jnp.full(mdp.n_actions, 1.0 / mdp.n_actions)),
            infer={"pgm_rl": {"mdp": mdp, "horizon": horizon, "beta": beta}},
        )
    states, rewards = rollout(mdp, actions)
    numpyro.deterministic("states", states)
    numpyro.deterministic("rewards", rewards)
    numpyro.factor("optimality", beta * jnp.sum(rewards, axis=-1))


def check_env(env):
    """Return ``env`` if it is a :class:`TabularMDP`, else raise ``TypeError``."""
    if not isinstance(env, TabularMDP):
        raise TypeError(
            f"env must be a pgm_rl.TabularMDP (e.g. a GridWorld), got {type(env).__name__}"
        )
    return env


def trajectory_problem(model, model_args=(), model_kwargs=None):
    """Read ``(mdp, horizon, beta)`` from a model built on :func:`trajectory_model`.

    Traces the model once and reads the ``"actions"`` site's metadata, so kernels that
    exploit the MDP structure work on any model that calls ``trajectory_model``.
    """
    model_trace = trace(seed(model, 0)).get_trace(*model_args, **(model_kwargs or {}))
    site = model_trace.get("actions")
    info = None if site is None else site["infer"].get("pgm_rl")
    if info is None:
        raise ValueError(
            "model must sample 'actions' through pgm_rl.trajectory_model; this kernel uses the MDP structure"
        )
    return info["mdp"], info["horizon"], info["beta"]
