"""Checked construction of the (S, A, K) outcome arrays every tabular world is stored as.

A :class:`~pgm_rl.worlds.tabular.TabularMDP` stores, for every state-action pair, its K possible
outcomes: next states ``states`` (S, A, K) int32, probabilities ``probs`` (S, A, K) and rewards
``rewards`` (S, A, K) (the reward of that outcome; it may depend on the state entered). K is the
largest number of outcomes of any pair; shorter rows are padded with probability-0 entries whose
state is the row's first outcome and whose reward is 0. Entries with the same next state and the
same reward are merged (probabilities summed); two entries with the same next state but different
rewards (Gymnasium's slippery CliffWalking: falling off the cliff or slipping both end at the
start) stay separate outcomes, so nothing is averaged away.

Everything here is NumPy on the host: it runs once, at construction.
"""

import numbers

import numpy as np

__all__ = [
    "PROBABILITY_TOLERANCE",
    "check_start",
    "dense_to_outcomes",
    "finite_float_array",
    "merge_outcomes",
]

# Rows of a transition table and start vectors must sum to 1 within this.
PROBABILITY_TOLERANCE = 1e-6


def _real_array(values, name):
    try:
        array = np.asarray(values)
    except ValueError:
        raise ValueError(f"{name} must be a rectangular array of numbers") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got {array.dtype} entries")
    return array.astype(np.float64)


def _check_probabilities(array, name):
    """Raise unless every entry is a finite probability in [0, 1] (naming the first bad one)."""
    bad = ~(np.isfinite(array) & (array >= 0.0) & (array <= 1.0 + PROBABILITY_TOLERANCE))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = ", ".join(map(str, index))
        raise ValueError(
            f"{name} must hold probabilities in [0, 1] (no NaN, negative or inf entries): "
            f"{name}[{where}] = {array[index]!r}"
        )


def dense_to_outcomes(transition, reward):
    """Sparse outcomes of a dense table, checked.

    Parameters
    ----------
    transition : array_like, shape (S, A, S)
        ``transition[s, a, s']`` = P(s' | s, a); every row ``transition[s, a]`` sums to 1 within
        :data:`PROBABILITY_TOLERANCE` (it is then renormalised exactly).
    reward : array_like, shape (S, A) or (S, A, S)
        Finite rewards; (S, A, S) when the reward depends on the state entered.

    Returns
    -------
    states : int32 array, shape (S, A, K)
    probs : float64 array, shape (S, A, K)
    rewards : float64 array, shape (S, A, K)
    """
    transition = _real_array(transition, "transition")
    if transition.ndim != 3 or transition.size == 0 or transition.shape[0] != transition.shape[2]:
        raise ValueError(
            f"transition must be a non-empty (S, A, S) array of probabilities, got shape "
            f"{transition.shape}"
        )
    n_states, n_actions, _ = transition.shape
    _check_probabilities(transition, "transition")
    sums = transition.sum(axis=2)
    _check_rows(sums, "transition", lambda s, a: f"transition[{s}, {a}]")
    reward = _real_array(reward, "reward")
    if reward.shape not in ((n_states, n_actions), (n_states, n_actions, n_states)):
        raise ValueError(
            f"reward must have shape (S, A) = {(n_states, n_actions)} or (S, A, S) = "
            f"{(n_states, n_actions, n_states)} to match transition {transition.shape}, got "
            f"{reward.shape}"
        )
    if not np.all(np.isfinite(reward)):
        raise ValueError("reward must hold finite numbers only (no NaN or inf)")
    row, action, state = np.nonzero(transition)  # row-major: the entries of a row are contiguous
    probs = transition[row, action, state] / sums[row, action]
    rewards = reward[row, action] if reward.ndim == 2 else reward[row, action, state]
    return _pack(row * n_actions + action, state, probs, rewards, n_states, n_actions)


def merge_outcomes(rows, states, probs, rewards, n_states, n_actions, name="transition"):
    """Merge, check and pack a list of outcome entries.

    Parameters
    ----------
    rows : int array, shape (N,)
        ``s * A + a`` of each entry.
    states, probs, rewards : arrays, shape (N,)
        Next state, probability and reward of each entry.
    n_states, n_actions : int
    name : str
        What the entries came from, for error messages.

    Entries of one row with equal next state and reward are merged; zero-probability entries are
    dropped; every row must sum to 1 within :data:`PROBABILITY_TOLERANCE` (then renormalised).

    Returns
    -------
    states, probs, rewards : arrays, shape (S, A, K)
    """
    rows = np.asarray(rows, np.int64)
    states = np.asarray(states, np.int64)
    probs = _real_array(probs, f"{name} probabilities")
    rewards = _real_array(rewards, f"{name} rewards")
    _check_probabilities(probs, f"{name} probabilities")
    if not np.all(np.isfinite(rewards)):
        raise ValueError(f"{name} rewards must be finite (no NaN or inf)")
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"{name} next states must lie in [0, {n_states}), the state indices")
    sums = np.bincount(rows, weights=probs, minlength=n_states * n_actions)
    _check_rows(sums.reshape(n_states, n_actions), name, lambda s, a: f"the entries of {name}")
    keep = probs > 0
    rows, states, probs, rewards = rows[keep], states[keep], probs[keep], rewards[keep]
    order = np.lexsort((rewards, states, rows))
    rows, states, probs, rewards = rows[order], states[order], probs[order], rewards[order]
    new = np.ones(rows.size, bool)
    new[1:] = (np.diff(rows) != 0) | (np.diff(states) != 0) | (np.diff(rewards) != 0)
    starts = np.flatnonzero(new)
    probs = np.add.reduceat(probs, starts)
    rows, states, rewards = rows[starts], states[starts], rewards[starts]
    probs = probs / sums[rows]
    return _pack(rows, states, probs, rewards, n_states, n_actions)


def _check_rows(sums, name, label):
    """Raise unless every row sum (S, A) is 1 within the tolerance; ``label(s, a)`` names a row."""
    bad = np.abs(sums - 1.0) > PROBABILITY_TOLERANCE
    if bad.any():
        s, a = (int(i) for i in np.argwhere(bad)[0])
        count = int(bad.sum())
        raise ValueError(
            f"{name} rows must sum to 1 (tolerance {PROBABILITY_TOLERANCE:g}): {label(s, a)} "
            f"(state {s}, action {a}) sums to {float(sums[s, a]):.10g}"
            + (f" ({count} bad rows)" if count > 1 else "")
        )


def _pack(rows, states, probs, rewards, n_states, n_actions):
    """Entries sorted by row (each row non-empty) -> padded (S, A, K) arrays."""
    n_rows = n_states * n_actions
    counts = np.bincount(rows, minlength=n_rows)
    width = int(counts.max())
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(rows.size) - first[rows]
    out_states = np.empty((n_rows, width), np.int32)
    out_states[:] = states[first][:, None]  # pads repeat the row's first outcome
    out_probs = np.zeros((n_rows, width))
    out_rewards = np.zeros((n_rows, width))
    out_states[rows, slot] = states
    out_probs[rows, slot] = probs
    out_rewards[rows, slot] = rewards
    shape = (n_states, n_actions, width)
    return out_states.reshape(shape), out_probs.reshape(shape), out_rewards.reshape(shape)


def check_start(start, n_states):
    """``start`` as an int state or a checked (S,) probability vector (renormalised).

    A vector with a single nonzero entry is returned as that state's index.
    """
    if isinstance(start, (bool, np.bool_)):
        raise TypeError(
            f"start must be an int state index or a length-{n_states} probability vector, got {start!r}"
        )
    if isinstance(start, numbers.Integral):
        if not 0 <= start < n_states:
            raise ValueError(f"start must lie in [0, {n_states}), the state indices, got {start}")
        return int(start)
    probs = _real_array(start, "start")
    if probs.shape != (n_states,):
        raise ValueError(
            f"start must be an int state index or a probability vector of shape ({n_states},) "
            f"(one entry per state), got shape {probs.shape}"
        )
    _check_probabilities(probs, "start")
    total = float(probs.sum())
    if abs(total - 1.0) > PROBABILITY_TOLERANCE:
        raise ValueError(
            f"start must sum to 1 (tolerance {PROBABILITY_TOLERANCE:g}), got a sum of {total!r}"
        )
    nonzero = np.flatnonzero(probs)
    if nonzero.size == 1:
        return int(nonzero[0])
    return probs / total


def finite_float_array(values, name, check_shape=None):
    """``values`` as a float64 array of finite reals; ``check_shape(shape)`` runs before any copy."""
    try:
        raw = np.asarray(values)
    except ValueError:
        raise ValueError(
            f"{name} must be a rectangular array of finite numbers (rows of equal length)"
        ) from None
    if raw.dtype.kind == "b":
        raise TypeError(
            f"{name} must be an array of finite real numbers, got bools (use 0.0 and 1.0)"
        )
    if raw.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of finite real numbers, got {raw.dtype} entries "
            f"from {type(values).__name__}"
        )
    if check_shape is not None:
        check_shape(raw.shape)
    array = raw.astype(float)
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must hold finite numbers only (no NaN or inf)")
    return array
