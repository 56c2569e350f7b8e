"""State marginals of sampled trajectories and their distances (NumPy only, no ArviZ)."""

import numpy as np

from pgm_rl._checks import check_positive_int

__all__ = [
    "empirical_state_marginals",
    "tv_distance",
    "varying_indicators",
    "weighted_state_marginals",
]


def empirical_state_marginals(states, n_states):
    """Empirical state marginals of sampled trajectories.

    Parameters
    ----------
    states : int array, shape (..., T + 1)
        Any leading sample dims (e.g. (chains, draws)).
    n_states : int

    Returns
    -------
    array, shape (T + 1, S): the fraction of trajectories in state s at step t.
    """
    n_states = check_positive_int(n_states, "n_states")
    states = np.asarray(states)
    if not np.issubdtype(states.dtype, np.integer) or states.ndim == 0:
        raise TypeError(f"states must be an integer array (..., T + 1), got dtype {states.dtype}")
    states = states.reshape(-1, states.shape[-1])
    if states.shape[0] == 0:
        raise ValueError("states must hold at least one trajectory, got none")
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")
    counts = np.zeros((states.shape[1], n_states))
    np.add.at(counts, (np.arange(states.shape[1])[None, :], states), 1.0)
    return counts / states.shape[0]


def weighted_state_marginals(states, log_weights, n_states):
    """State marginals of weighted trajectories (e.g. SMC particles).

    Parameters
    ----------
    states : int array, shape (N, T + 1)
    log_weights : float array, shape (N,)
        Log weights, normalised or not (they are normalised here).
    n_states : int

    Returns
    -------
    numpy.ndarray, shape (T + 1, S)
        The weight of the trajectories in state s at step t; each row sums to 1.
    """
    states = np.asarray(states)
    log_weights = np.asarray(log_weights, dtype=float)
    n_states = check_positive_int(n_states, "n_states")
    if not np.issubdtype(states.dtype, np.integer) or states.ndim != 2:
        raise TypeError(
            f"states must be an integer array of shape (N, T + 1), got dtype {states.dtype} "
            f"and shape {states.shape}"
        )
    if log_weights.shape != states.shape[:1]:
        raise ValueError(
            f"log_weights must have shape (N,) = {states.shape[:1]}, got {log_weights.shape}"
        )
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")
    if np.isnan(log_weights).any() or not np.isfinite(log_weights.max(initial=-np.inf)):
        raise ValueError("log_weights must have no NaN and at least one finite entry")
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    counts = np.zeros((states.shape[1], n_states))
    np.add.at(counts, (np.arange(states.shape[1])[None, :], states), weights[:, None])
    return counts


def tv_distance(p, q, axis=-1):
    """Total-variation distance ``0.5 * sum |p - q|`` along ``axis``; p and q of one shape."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return 0.5 * np.abs(p - q).sum(axis=axis)


def varying_indicators(states, n_states):
    """The occupancy indicators that vary: (K, chains, draws) floats and their (step, state)."""
    states = np.asarray(states)
    if not np.issubdtype(states.dtype, np.integer) or states.ndim != 3:
        raise TypeError(
            f"states must be an integer array (chains, draws, T + 1), got dtype {states.dtype} "
            f"and shape {states.shape}"
        )
    n_states = check_positive_int(n_states, "n_states")
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")
    counts = empirical_state_marginals(states, n_states)
    steps, cells = np.nonzero((counts > 0) & (counts < 1))
    indicators = (np.moveaxis(states[..., steps], -1, 0) == cells[:, None, None]).astype(float)
    return indicators, (steps, cells)
