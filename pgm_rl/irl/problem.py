"""The arrays and argument checks of an inverse-RL problem: dynamics with outcome features,
sufficient statistics of demonstrations, and the checks every public function shares."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import check_beta, check_trajectories
from pgm_rl.messages import working_dtype
from pgm_rl.worlds import check_env

__all__ = [
    "LIKELIHOODS",
    "Dynamics",
    "Statistics",
    "bare_dynamics",
    "check_beta_arg",
    "check_horizon_arg",
    "check_likelihood",
    "check_prior_scale",
    "check_theta",
    "demonstration_statistics",
    "dynamics",
    "expected_reward",
    "get_demo_arrays",
    "is_traced",
    "outcome_reward",
    "prior_scales",
    "real_array",
    "reward_to_scaled",
    "statistics",
    "to_jax",
]

LIKELIHOODS = ("trajectory", "soft_bellman")


class Dynamics(NamedTuple):
    """The MDP's arrays (a pytree): ``ns`` (S, A, K) int32, ``logp`` (S, A, K) (-inf padding),
    ``probs`` (S, A, K), ``log_p0`` (S,), ``feats`` (S, A, K, F) the features of each outcome;
    NumPy arrays in the working dtype."""

    ns: jax.Array
    logp: jax.Array
    probs: jax.Array
    log_p0: jax.Array
    feats: jax.Array


def _absorbing_mask(mdp):
    """(S,) bool: the MDP's terminal (absorbing, reward-0) states, where features are zeroed."""
    mask = np.zeros(mdp.n_states, bool)
    terminal = getattr(mdp, "terminal_states", ()) or ()
    mask[list(terminal)] = True
    return mask


def _check_features(features, mdp):
    """``features`` as a float array (S, F) or (S, A, F), checked."""
    if isinstance(features, jax.core.Tracer):
        raise TypeError("features must be a concrete array, not a traced value")
    try:
        array = np.asarray(features)
    except ValueError:
        raise ValueError("features must be a rectangular (S, F) or (S, A, F) array") from None
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(f"features must be a real (non-bool) array, got dtype {array.dtype}")
    n_states, n_actions = mdp.n_states, mdp.n_actions
    if (
        not (
            (array.ndim == 2 and array.shape[0] == n_states)
            or (array.ndim == 3 and array.shape[:2] == (n_states, n_actions))
        )
        or array.shape[-1] == 0
    ):
        raise ValueError(
            f"features must have shape (S, F) = ({n_states}, F) (features of the state entered) "
            f"or (S, A, F) = ({n_states}, {n_actions}, F), F >= 1; got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("features must be finite (they hold NaN or inf)")
    return array.astype(np.float64)


def dynamics(env, features):
    """Checked :class:`Dynamics` of ``env`` with ``features`` (S, F) or (S, A, F)."""
    mdp = check_env(env)
    feats = _check_features(features, mdp)
    ns = np.asarray(mdp.outcome_states, np.int32)
    probs = np.asarray(mdp.outcome_probs, np.float64)
    if feats.ndim == 2:  # the grid convention: the reward of the state entered
        out = feats[ns]  # (S, A, K, F)
        out = out * (~_absorbing_mask(mdp))[:, None, None, None]
    else:
        out = np.broadcast_to(feats[:, :, None, :], (*ns.shape, feats.shape[-1]))
    out = np.where(probs[..., None] > 0, out, 0.0)
    dtype = working_dtype()
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
        log_p0 = np.log(np.asarray(mdp.start_probs, np.float64))
    # NumPy arrays (host constants): checks read them even while a model is being traced
    return Dynamics(
        ns=ns,
        logp=logp.astype(dtype),
        probs=probs.astype(dtype),
        log_p0=log_p0.astype(dtype),
        feats=np.ascontiguousarray(out, dtype),
    )


def bare_dynamics(env):
    """:class:`Dynamics` of ``env`` with one zero feature (for functions given rewards)."""
    mdp = check_env(env)
    return dynamics(mdp, np.zeros((mdp.n_states, 1)))


def to_jax(dyn):
    """The same arrays as JAX arrays (for traced code)."""
    return Dynamics(*(jnp.asarray(x) for x in dyn))


def outcome_reward(dyn, theta):
    """r_theta(s, a, k) = feats[s, a, k] @ theta, (S, A, K)."""
    return dyn.feats @ theta


def expected_reward(dyn, theta):
    """E_k r_theta(s, a, k), (S, A)."""
    return jnp.sum(dyn.probs * outcome_reward(dyn, theta), axis=-1)


def reward_to_scaled(dyn, reward, beta):
    """beta * reward as outcome rewards (S, A, K) from (S, A) or (S, A, K)."""
    reward = jnp.asarray(reward, working_dtype())
    if reward.shape == dyn.ns.shape[:2]:
        reward = jnp.broadcast_to(reward[..., None], dyn.ns.shape)
    elif reward.shape != dyn.ns.shape:
        raise ValueError(
            f"reward must have shape (S, A) = {dyn.ns.shape[:2]} or (S, A, K) = {dyn.ns.shape}, "
            f"got {reward.shape}"
        )
    return beta * jnp.where(jnp.isfinite(dyn.logp), reward, 0.0)


# ----------------------------------------------------------------------------- demonstrations


class Statistics(NamedTuple):
    """Sufficient statistics of N demonstrations (a pytree).

    ``transitions`` (S, A, K): how often outcome k of (s, a) was taken; ``choices`` (T, S, A):
    how often a was chosen in s at step t; ``log_start_dynamics``: the theta-free part of the log
    likelihood (start, dynamics; the uniform action prior for ``"trajectory"`` is added later);
    ``n``: N.
    """

    transitions: jax.Array
    choices: jax.Array
    log_start_dynamics: jax.Array
    n: jax.Array


def is_traced(*values):
    """Whether any of ``values`` is a JAX tracer."""
    return any(isinstance(v, jax.core.Tracer) for v in values)


def get_demo_arrays(demonstrations):
    """``(actions, states)`` of a demonstrations dict, or ``TypeError``/``ValueError``."""
    if not isinstance(demonstrations, dict) and not hasattr(demonstrations, "keys"):
        raise TypeError(
            "demonstrations must be a dict with 'actions' (N, T) and 'states' (N, T + 1), got "
            f"{type(demonstrations).__name__}"
        )
    missing = [k for k in ("actions", "states") if k not in demonstrations]
    if missing:
        raise ValueError(
            f"demonstrations lacks {missing}: it needs 'actions' (N, T) and 'states' (N, T + 1)"
        )
    return demonstrations["actions"], demonstrations["states"]


def statistics(dyn, actions, states):
    """:class:`Statistics` of (unchecked) demonstrations (N, T) and (N, T + 1); traceable."""
    dyn = to_jax(dyn)
    actions = jnp.asarray(actions, jnp.int32)
    states = jnp.asarray(states, jnp.int32)
    n, horizon = actions.shape
    n_states, n_actions, _ = dyn.ns.shape
    dtype = dyn.probs.dtype
    here, there = states[:, :-1], states[:, 1:]
    match = (dyn.ns[here, actions] == there[..., None]) & (dyn.probs[here, actions] > 0)
    k = jnp.argmax(match, axis=-1)  # (N, T)
    transitions = jnp.zeros(dyn.ns.shape, dtype).at[here, actions, k].add(1.0)
    time = jnp.broadcast_to(jnp.arange(horizon), (n, horizon))
    choices = jnp.zeros((horizon, n_states, n_actions), dtype).at[time, here, actions].add(1.0)
    logp = jnp.where(jnp.isfinite(dyn.logp), dyn.logp, 0.0)
    const = jnp.sum(dyn.log_p0[states[:, 0]]) + jnp.sum(transitions * logp)
    return Statistics(transitions, choices, const, jnp.asarray(n, dtype))


def demonstration_statistics(env, features, demonstrations):
    """Checked sufficient statistics of ``demonstrations`` (what the likelihoods read).

    Returns a NamedTuple with ``transitions`` (S, A, K) counts of each outcome taken,
    ``choices`` (T, S, A) counts of each action chosen per step and state, the theta-free
    ``log_start_dynamics`` and ``n`` (N). Raises ``ValueError``/``TypeError`` as
    :func:`~pgm_rl.irl.reward_model` does.
    """
    dyn = dynamics(env, features)
    actions, states = get_demo_arrays(demonstrations)
    if not is_traced(actions, states):
        actions, states = check_trajectories(
            check_env(env), actions, states, "demonstrations", "demonstration", batch_ndim=1
        )
    return statistics(dyn, actions, states)


# ----------------------------------------------------------------------------- argument checks


def check_likelihood(likelihood):
    """``likelihood`` if one of :data:`LIKELIHOODS`, else ``ValueError``."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def check_beta_arg(beta):
    """A checked float beta (a traced one passes unchecked)."""
    if is_traced(beta):
        return beta
    return float(check_beta(beta))


def check_horizon_arg(horizon):
    """``horizon`` as an int >= 1, else ``ValueError``."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    return int(horizon)


def check_prior_scale(prior_scale):
    """``prior_scale`` if a positive finite float or (F,) array (a traced one passes)."""
    if is_traced(prior_scale):
        return prior_scale
    if isinstance(prior_scale, bool) or not isinstance(
        prior_scale, (int, float, np.integer, np.floating, np.ndarray, jax.Array)
    ):
        raise TypeError(f"prior_scale must be a positive float, got {prior_scale!r}")
    value = np.asarray(prior_scale, np.float64)
    if value.ndim > 1 or not np.all(np.isfinite(value)) or not np.all(value > 0):
        raise ValueError(
            f"prior_scale must be finite and > 0 (a float or (F,)), got {prior_scale!r}"
        )
    return prior_scale


def prior_scales(prior_scale, n_features, dtype):
    """``prior_scale`` broadcast to (F,), or ``ValueError`` naming it."""
    scale = jnp.asarray(prior_scale, dtype)
    if scale.ndim > 1 or (scale.ndim == 1 and scale.shape[0] not in (1, n_features)):
        raise ValueError(
            f"prior_scale must be a float or an array (F,) = ({n_features},), got shape "
            f"{scale.shape}"
        )
    return jnp.broadcast_to(scale, (n_features,))


def check_theta(theta, n_features):
    """``theta`` as an (F,) array in the working dtype, else ``ValueError``."""
    theta = jnp.asarray(theta, working_dtype())
    if theta.shape != (n_features,):
        raise ValueError(f"theta must have shape (F,) = ({n_features},), got {theta.shape}")
    return theta


def real_array(values, name):
    """``values`` as a real NumPy array, else ``TypeError`` naming ``name``."""
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a real array, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be a real array, got a complex one")
    return array
