"""The ELBO of a policy and its gradients: the score-function estimator for NumPyro's SVI
(:class:`PolicyGradientELBO`) and the exact ELBO's natural and Euclidean gradients (the
soft-value recursions are :func:`pgm_rl.messages.policy_values` and
:func:`pgm_rl.messages.policy_elbo`; see :mod:`pgm_rl.variational`).
"""

import jax
import jax.numpy as jnp
from jax import lax, random
from numpyro.handlers import seed
from numpyro.infer.elbo import ELBO
from numpyro.infer.util import get_importance_trace

from pgm_rl._checks import check_positive_int
from pgm_rl.messages import policy_elbo, policy_values
from pgm_rl.variational.guides import _log_policy, _PolicyActions

__all__ = ["PolicyGradientELBO"]


class PolicyGradientELBO(ELBO):
    """Score-function ELBO for :func:`policy_guide` with the two classic variance reductions.

    REINFORCE for the maximum-entropy objective, as a NumPyro ``ELBO`` (use it with
    ``numpyro.infer.SVI``): ``num_particles`` trajectories per step; the score of step t,
    ``grad log q_t(a_t | s_t)``, is paired only with the costs from step t on (reward to go,
    ``beta r_t' - log q_t' - log A``: earlier costs do not depend on a_t), minus a leave-one-out
    baseline (the mean reward to go of step t over the OTHER particles: independent of this
    particle, so unbiased). The loss value is the usual ELBO estimate. For the model
    ``trajectory_model`` and guide :func:`policy_guide` only (it reads the per-step rewards and
    ``beta`` from the model's trace); for models with more sites use ``TraceGraph_ELBO``.
    """

    can_infer_discrete = True

    def __init__(self, num_particles=64):
        if check_positive_int(num_particles, "num_particles") < 2:
            raise ValueError("num_particles must be >= 2 (the baseline leaves one out)")
        super().__init__(num_particles=num_particles)

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        def one(key):
            model_key, guide_key = random.split(key)
            model_trace, guide_trace = get_importance_trace(
                seed(model, model_key), seed(guide, guide_key), args, kwargs, param_map
            )
            elbo = 0.0
            for site in model_trace.values():
                if site["type"] == "sample":
                    elbo = elbo + jnp.sum(site["log_prob"])
            for site in guide_trace.values():
                if site["type"] == "sample":
                    elbo = elbo - jnp.sum(site["log_prob"])
            site = guide_trace["actions"]
            if not isinstance(site["fn"], _PolicyActions):
                raise ValueError("PolicyGradientELBO needs the guide of pgm_rl.policy_guide")
            step_log_q = site["fn"].step_log_prob(site["value"])
            costs = (
                beta * model_trace["rewards"]["value"]
                + model_trace["actions"]["log_prob"]
                - lax.stop_gradient(step_log_q)
            )
            to_go = jnp.cumsum(costs[::-1])[::-1]
            return lax.stop_gradient(elbo), step_log_q, lax.stop_gradient(to_go)

        beta = kwargs["beta"] if "beta" in kwargs else args[2]  # trajectory_model's arguments
        keys = random.split(rng_key, self.num_particles)
        elbo, step_log_q, to_go = jax.vmap(one)(keys)
        n = self.num_particles
        baseline = (jnp.sum(to_go, axis=0, keepdims=True) - to_go) / (n - 1)
        surrogate = jnp.mean(jnp.sum(step_log_q * (to_go - baseline), axis=-1))
        return -(jnp.mean(elbo) + surrogate - lax.stop_gradient(surrogate))


# ----------------------------------------------------------------------------- exact ELBO


def _dynamics(mdp):
    """(ns, probs, rewards) (S, A, K) and mu0 (S,) as JAX arrays in the working dtype."""
    dtype = jnp.asarray(0.0).dtype
    return (
        jnp.asarray(mdp.outcome_states, jnp.int32),
        jnp.asarray(mdp.outcome_probs, dtype),
        jnp.asarray(mdp.outcome_rewards, dtype),
        jnp.asarray(mdp.start_probs, dtype),
    )


def _natural_gradient(params, parametrization, features, horizon, dyn, beta):
    """Minus the natural gradient of the ELBO (the direction optax minimises along), and ELBO."""
    ns, probs, rewards, mu0 = dyn
    log_pi = _log_policy(params, parametrization, features, horizon)
    elbo, mus = policy_elbo(log_pi, ns, probs, rewards, mu0, beta)
    q, v = policy_values(log_pi, ns, probs, rewards, beta)
    advantage = q - log_pi - jnp.log(log_pi.shape[-1]) - v[:-1, :, None]  # (T, S, A)
    if parametrization == "time-indexed":
        direction = advantage
    elif parametrization == "stationary":
        mass = jnp.sum(mus, axis=0)  # (S,)
        weighted = (
            jnp.sum(mus[..., None] * advantage, axis=0) / jnp.where(mass > 0, mass, 1.0)[:, None]
        )
        direction = jnp.where((mass > 0)[:, None], weighted, jnp.mean(advantage, axis=0))
    else:
        pi = jnp.exp(log_pi)
        n_feat, n_actions = params.shape
        # Fisher of the trajectory distribution in W (F, A): sum_{t,s} mu phi phi^T (x) Cov(pi)
        w = jnp.sum(mus[..., None] * pi, axis=0)  # (S, A): sum_t mu_t(s) pi_t(a|s)
        diag = jnp.einsum("sa,sf,sg->fag", w, features, features)
        outer = jnp.einsum("ts,tsa,tsb,sf,sg->fagb", mus, pi, pi, features, features)
        fisher = jnp.einsum("fag,ab->fagb", diag, jnp.eye(n_actions)) - outer
        fisher = fisher.reshape(n_feat * n_actions, n_feat * n_actions)
        grad = jnp.einsum("ts,tsa,sf->fa", mus, pi * advantage, features).reshape(-1)
        # The Fisher is singular by construction (adding one vector to every action's column
        # of W leaves the policy unchanged; features that are zero or only on unvisited states
        # add more null directions): the natural gradient is its minimum-norm least-squares
        # solution, the pseudo-inverse with eigenvalues below 10 (F A) eps of the largest
        # dropped (rounding noise of the working dtype; all of them for a zero Fisher, which
        # gives the zero step). grad lies in the Fisher's range, so nothing else is lost.
        direction = (jnp.linalg.pinv(fisher, hermitian=True) @ grad).reshape(n_feat, n_actions)
    return -direction, elbo


def _euclidean_gradient(params, parametrization, features, horizon, dyn, beta):
    """The gradient of minus the ELBO by ``jax.grad`` (what optax minimises along), and ELBO."""
    ns, probs, rewards, mu0 = dyn

    def loss(p):
        log_pi = _log_policy(p, parametrization, features, horizon)
        return -policy_elbo(log_pi, ns, probs, rewards, mu0, beta)[0]

    value, grad = jax.value_and_grad(loss)(params)
    return grad, -value
