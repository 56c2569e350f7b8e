"""Particle machinery shared by SMC (:mod:`pgm_rl.smc`) and particle Gibbs
(:mod:`pgm_rl.kernels.particle_gibbs`): resampling, the proposal check, the proposal's soft
value and the twisted incremental weight.

Neither sampler imports the other's internals; both take these pieces from here.
"""

import jax.numpy as jnp
import numpy as np

from pgm_rl._sampling import multinomial_resample
from pgm_rl.messages import policy_values

__all__ = ["check_proposal", "multinomial_resample", "proposal_values", "twist"]


def twist(values, t, here, there):
    """The twisted increment ``psi_{t+1}(there) - psi_t(here)`` (no ``psi_0`` at t = 0).

    Parameters
    ----------
    values : float array, shape (T + 1, S)
        The twist ``psi`` (e.g. a proposal's soft value, ``psi_T = 0``).
    t : int scalar
        The step, in [0, T).
    here, there : int arrays, shape (N,)
        The particles' states before and after step t.

    Returns
    -------
    float array, shape (N,)
    """
    return values[t + 1][there] - jnp.where(t > 0, values[t][here], 0.0)


def proposal_values(log_q, world, beta):
    """The soft value of a proposal policy: ``V^q_t(s)``, shape (T + 1, S), ``V^q_T = 0``.

    ``V^q_t(s) = sum_a q_t(a | s) (E_{s'}[beta r(s, a, s') + V^q_{t+1}(s')] - log q_t(a | s) -
    log A)``, the ELBO to go of q from state s at step t (= log Z to go when q is the
    posterior on a deterministic MDP): the twist ``psi`` of SMC and particle Gibbs, by
    :func:`pgm_rl.messages.policy_values`.

    Parameters
    ----------
    log_q : float array, shape (T, S, A)
        The proposal's normalised log-probabilities (:func:`check_proposal`).
    world : TabularMDP
        Its outcome arrays (S, A, K) are used.
    beta : float
        Traceable.

    Returns
    -------
    float array, shape (T + 1, S)
    """
    arrays = (world.outcome_states, world.outcome_probs, world.outcome_rewards)
    return policy_values(log_q, *(jnp.asarray(array) for array in arrays), beta)[1]


def check_proposal(proposal, mdp, horizon):
    """The log-probabilities (T, S, A) of a proposal policy, checked; else a clear error.

    ``proposal``: a (T, S, A) array of probabilities (rows summing to 1 within 1e-6, no NaN,
    no zero: the uniform prior gives every action positive probability, and a proposal that
    never draws one would make the importance weights miss part of the posterior), or an
    object with a ``log_policy`` (T, S, A) attribute (a ``FittedPolicy``,
    ``SoftBellmanPolicy`` or ``ExactPosterior``), whose entries must be finite.

    Parameters
    ----------
    proposal : array_like, shape (T, S, A), or an object with ``.log_policy`` (T, S, A)
    mdp : TabularMDP
    horizon : int
        T.

    Returns
    -------
    float array, shape (T, S, A)
        ``log q``, normalised over the actions, in the working dtype.

    Raises
    ------
    TypeError
        For a non-numeric proposal.
    ValueError
        For the wrong shape, NaN, negative or zero probabilities, rows not summing to 1.
    """
    if hasattr(proposal, "log_policy"):
        log_q = np.asarray(proposal.log_policy, np.float64)
        what = "proposal.log_policy"
    else:
        try:
            array = np.asarray(proposal)
        except (TypeError, ValueError):
            raise TypeError(
                "proposal must be a (T, S, A) array of probabilities or have a .log_policy"
            ) from None
        if array.dtype.kind not in "iuf":
            raise TypeError(
                f"proposal must be a (T, S, A) array of probabilities, got dtype {array.dtype}"
            )
        array = array.astype(np.float64)
        what = "proposal"
        log_q = None
    expected = (horizon, mdp.n_states, mdp.n_actions)
    shape = (log_q if log_q is not None else array).shape
    if shape != expected:
        raise ValueError(f"{what} must have shape (T, S, A) = {expected}, got {shape}")
    if log_q is None:
        if np.isnan(array).any() or (array < 0).any() or not np.isfinite(array).all():
            raise ValueError("proposal must hold probabilities (no NaN, inf or negative entries)")
        zero = array == 0.0
        if zero.any():
            t, s_, a = (int(i) for i in np.argwhere(zero)[0])
            raise ValueError(
                f"proposal must give every action a positive probability (the prior does): "
                f"proposal[{t}, {s_}, {a}] = 0 (step {t}, state {s_}, action {a})"
            )
        sums = array.sum(axis=-1)
        wrong = np.abs(sums - 1.0) > 1e-6
        if wrong.any():
            t, s_ = (int(i) for i in np.argwhere(wrong)[0])
            raise ValueError(
                f"proposal rows must sum to 1 (tolerance 1e-6): proposal[{t}, {s_}] sums to "
                f"{sums[t, s_]!r}"
            )
        log_q = np.log(array / sums[..., None])
    else:
        bad = ~np.isfinite(log_q)
        if bad.any():
            t, s_, a = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{what} must be finite (a proposal needs full support, as the prior has): "
                f"entry [{t}, {s_}, {a}] is {log_q[t, s_, a]!r}"
            )
        norm = np.logaddexp.reduce(log_q, axis=-1)
        if np.abs(norm).max() > 1e-6:
            raise ValueError(f"{what} must be normalised (logsumexp over actions = 0)")
        log_q = log_q - norm[..., None]
    return jnp.asarray(log_q, jnp.asarray(0.0).dtype)
