"""The forward-KL fit: the maximum-likelihood policy of sampled trajectories
(:func:`fit_policy_to_samples`); :func:`~pgm_rl.variational.fit_policy` is the reverse-KL fit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from pgm_rl._checks import check_actions, check_beta, check_positive_int, check_trajectories
from pgm_rl.dynamics import rollout
from pgm_rl.variational.fit import FittedPolicy, _finish
from pgm_rl.variational.guides import PolicyGuide, _check_features, _check_parametrization
from pgm_rl.worlds import check_env, describe_randomness

__all__ = ["fit_policy_to_samples"]


def fit_policy_to_samples(
    env,
    samples,
    parametrization="time-indexed",
    prior_counts=1.0,
    *,
    features=None,
    beta=None,
    num_steps=500,
):
    """The maximum-likelihood policy of sampled trajectories: the forward-KL (mass-covering) fit.

    ``KL(p || q)`` with p the distribution the samples come from (any kernel's draws, or
    ``solve(...).sample``): for the tabular parametrizations the Dirichlet-smoothed counts,
    ``q_t(a | s) = (n_t(s, a) + prior_counts) / (n_t(s) + A prior_counts)`` (summed over t for
    ``"stationary"``); for ``"features"``, softmax regression of the actions on
    ``features[s]`` (Adam, ``num_steps`` steps on the mean log-likelihood, with a Gaussian
    penalty ``prior_counts / 2 |W|^2 / n``). SVI's :func:`fit_policy` is the reverse-KL
    (mode-seeking) fit.

    Parameters
    ----------
    env : TabularMDP
    samples : dict with ``"actions"`` (..., T) and ``"states"`` (..., T + 1)
        ``"states"`` may be omitted on deterministic MDPs (rolled out from the actions).
    parametrization : {"time-indexed", "stationary", "features"}
    prior_counts : float > 0
    features : array (S, F), for ``"features"``
    beta : float, optional
        When given, ``elbo`` and ``kl_to_posterior`` are evaluated at this beta (else NaN/None).

    num_steps : int >= 1, for ``"features"``

    Returns
    -------
    FittedPolicy (``objective="samples"``; ``elbo_trace`` holds the per-step mean
    log-likelihood for ``"features"``, is empty for the tabular ones)

    Raises
    ------
    ValueError, TypeError
        For bad arguments, and for samples that are not trajectories of ``env`` (non-integer
        arrays, no trajectory, shapes, ranges, a start or a move ``env`` does not allow: the
        check :func:`~pgm_rl.irl.reward_model` applies to demonstrations), before any work.
    """
    mdp = check_env(env)
    parametrization = _check_parametrization(parametrization)
    features = _check_features(features, parametrization, mdp.n_states)
    if isinstance(prior_counts, bool) or not isinstance(prior_counts, (int, float)):
        raise TypeError(f"prior_counts must be a positive number, got {prior_counts!r}")
    if not (prior_counts > 0 and np.isfinite(prior_counts)):
        raise ValueError(f"prior_counts must be a positive number, got {prior_counts!r}")
    num_steps = check_positive_int(num_steps, "num_steps")
    beta = None if beta is None else float(check_beta(beta))
    if not isinstance(samples, dict) or "actions" not in samples:
        raise TypeError(
            "samples must be a dict with 'actions' (..., T) (and 'states' (..., T + 1))"
        )
    actions = samples["actions"]
    if "states" in samples:
        states = samples["states"]
    elif randomness := describe_randomness(mdp):
        raise ValueError(f"samples must hold 'states' (..., T + 1) on an MDP with {randomness}")
    else:
        actions = check_actions(actions, mdp.n_actions, "samples", "sample")
        states = np.asarray(rollout(mdp, actions)[0])
    actions, states = check_trajectories(mdp, actions, states, "samples", "sample")
    horizon = actions.shape[-1]
    n_states, n_actions = mdp.n_states, mdp.n_actions
    counts = np.zeros((horizon, n_states, n_actions))
    time = np.broadcast_to(np.arange(horizon), actions.shape)
    np.add.at(counts, (time, states[:, :-1], actions), 1.0)
    guide = PolicyGuide(mdp, horizon, parametrization, features)
    trace = jnp.zeros(0)
    if parametrization == "time-indexed":
        params = jnp.log(counts + prior_counts)
    elif parametrization == "stationary":
        params = jnp.log(counts.sum(axis=0) + prior_counts)
    else:
        per_state = jnp.asarray(counts.sum(axis=0))  # (S, A)
        total = float(per_state.sum())
        optimizer = optax.adam(0.1)

        def loss(w):
            log_q = jax.nn.log_softmax(features @ w, axis=-1)
            return -jnp.sum(per_state * log_q) / total + 0.5 * prior_counts * jnp.sum(w**2) / total

        @jax.jit
        def run(w, state):
            def step(carry, _):
                w, state = carry
                value, grad = jax.value_and_grad(loss)(w)
                updates, state = optimizer.update(grad, state, w)
                return (optax.apply_updates(w, updates), state), -value

            return lax.scan(step, (w, state), None, length=num_steps)

        w0 = guide.init_params()
        (params, _), trace = run(w0, optimizer.init(w0))
    if beta is None:
        log_pi = guide.log_policy(params)
        return FittedPolicy(log_pi, float("nan"), trace, None, None, params, guide, "samples", None)
    return _finish(guide, params, trace, None, "samples", beta)
