"""Checking a stored run against the layout of :mod:`pgm_rl.diagnostics` and its own data.

:func:`check_run` refuses a damaged or edited tree by name; :func:`check_steps` (every step a
possible outcome of its state and action) and :func:`best_outcome` are shared with
:func:`~pgm_rl.diagnostics.to_datatree`, and :func:`stored_outcomes` reads the dynamics back in
either stored layout.
"""

import numpy as np
import xarray as xr

__all__ = [
    "OUTCOME_NAMES",
    "RunError",
    "best_outcome",
    "check_run",
    "check_steps",
    "stored_outcomes",
]

OUTCOME_NAMES = ("outcome_states", "outcome_probs", "outcome_rewards")
# The scalars of a run's ``reference`` group (pgm_rl.diagnostics.Reference.to_dataset).
REFERENCE_SCALARS = (
    "log_z",
    "log_z_se",
    "ess",
    "num_samples",
    "expected_return",
    "expected_return_se",
    "return_sd",
    "markov_log_z",
)
_POSTERIOR_DIMS = {
    "actions": ("chain", "draw", "time"),
    "states": ("chain", "draw", "step"),
    "rewards": ("chain", "draw", "time"),
    "return": ("chain", "draw"),
}


class RunError(Exception):
    """One inconsistency found by :func:`check_run` (turned into its ValueError)."""


def check_run(dt, source="dt"):
    """Check a run (e.g. one read back by :func:`pgm_rl.io.load`) against its own data.

    :func:`pgm_rl.io.load` reads any DataTree; the functions of this module and the pictures
    trust the layout of :func:`to_datatree` (module docstring). This checks that layout, so a
    damaged or edited file is refused by name instead of giving a traceback or, worse, a
    plausible but wrong report:

    - the groups ``posterior`` and ``constant_data`` are there;
    - the root attributes ``horizon`` (int >= 1), ``beta`` (finite number >= 0),
      ``start_state`` and ``best_state`` (ints), ``sampler`` (str) are there with these types
      (``kernel``, when there, is a str); for a grid also ``start_row`` and ``start_col``;
    - ``constant_data``: ``next_state`` (state, action) integer state indices in [0, S), or
      the outcomes ``outcome_states`` (state, action, outcome) in [0, S), ``outcome_probs``
      (rows summing to 1) and ``outcome_rewards`` finite; ``reward`` (state, action) finite;
      ``grid`` (row, col), when there, has rows * cols = S cells and
      ``start_state = start_row * cols + start_col``;
    - ``start_state`` and ``best_state`` are state indices in [0, S); ``best_state`` is the
      state entered with the largest reward (as :func:`to_datatree` sets it);
    - ``posterior``: ``actions`` (chain, draw, time), ``states`` (chain, draw, step),
      ``rewards`` (chain, draw, time) and ``return`` (chain, draw), at least one chain and
      one draw, ``time`` = 0..T-1 and ``step`` = 1..T with T = ``horizon``; integer actions in
      [0, A) and states in [0, S); every step from ``start_state`` is a possible outcome of its
      state and action with that outcome's reward, and ``return`` is the sum of the rewards;
    - ``sample_stats``, when there, has the posterior's chains and draws; ``exact``, when
      there, has ``state_marginals`` (step = T + 1, state = S), ``action_marginals``
      (time = T, action = A) and scalar ``log_z`` and ``expected_return``; ``reference``, when
      there, has ``state_marginals`` and ``state_marginals_se`` (step = T + 1, state = S),
      finite scalars ``log_z``, ``log_z_se``, ``ess``, ``num_samples``, ``expected_return``,
      ``expected_return_se``, ``return_sd``, ``markov_log_z`` and a str attribute ``kind``.

    Parameters
    ----------
    dt : xarray.DataTree
    source : str, default "dt"
        What to call the tree in the message, e.g. the file it was read from.

    Returns
    -------
    xarray.DataTree
        ``dt`` itself, unchanged.

    Raises
    ------
    TypeError
        ``dt`` is not a DataTree.
    ValueError
        The first inconsistency found, one line naming ``source`` and the group, variable or
        attribute at fault.
    """
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree, got {type(dt).__name__}")
    try:
        _check_run(dt)
    except RunError as error:
        raise ValueError(f"{source}: not a consistent pgm-rl run: {error}") from None
    return dt


def _check_run(dt):
    for name in ("posterior", "constant_data"):
        if name not in dt.children:
            raise RunError(f"the {name!r} group is missing")
    attrs = dt.attrs
    horizon = _int_attr(attrs, "horizon", minimum=1)
    beta = _attr(attrs, "beta")
    if isinstance(beta, bool | np.bool_) or not isinstance(beta, int | float | np.number):
        raise RunError(f"attribute 'beta' must be a number, got {beta!r}")
    if not (np.isfinite(beta) and beta >= 0):
        raise RunError(f"attribute 'beta' must be a finite number >= 0, got {beta!r}")
    for name in ("sampler", "kernel"):
        if (name == "sampler" or name in attrs) and not isinstance(_attr(attrs, name), str):
            raise RunError(f"attribute {name!r} must be a str, got {attrs[name]!r}")

    data = dt["constant_data"].to_dataset()
    if "outcome_states" in data:  # (S, A, K) outcomes, else (S, A) tables: one outcome per step
        names = OUTCOME_NAMES
        dims = ("state", "action", "outcome")
    else:
        names = ("next_state",)
        dims = ("state", "action")
    arrays = {name: _variable(data, "constant_data", name, dims) for name in names}
    next_state = arrays[names[0]]
    if any(array.shape != next_state.shape for array in arrays.values()):
        raise RunError("constant_data outcome arrays must have one shape (S, A, K)")
    arrays["reward"] = reward = _variable(data, "constant_data", "reward", ("state", "action"))
    n_states, n_actions = next_state.shape[:2]
    if n_states == 0 or n_actions == 0:
        raise RunError(f"constant_data {names[0]!r} is empty (shape {next_state.shape})")
    _in_range(next_state, f"constant_data {names[0]!r}", n_states, "state indices")
    for name, array in list(arrays.items())[1:]:
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise RunError(f"constant_data {name!r} must be finite numbers")
    if reward.shape != (n_states, n_actions):
        raise RunError(
            f"constant_data 'reward' must have shape (S, A) = {(n_states, n_actions)}, got "
            f"{reward.shape}"
        )
    outcomes = stored_outcomes(data)
    if np.any(outcomes[1] < 0) or not np.allclose(outcomes[1].sum(axis=-1), 1.0, atol=1e-6):
        raise RunError("constant_data 'outcome_probs' must be probabilities summing to 1")
    start = _int_attr(attrs, "start_state", minimum=0, below=n_states)
    best = _int_attr(attrs, "best_state", minimum=0, below=n_states)
    goal = best_outcome(*outcomes)
    if best != goal:
        raise RunError(
            f"attribute 'best_state' = {best} is not the state entered with the largest reward "
            f"of constant_data ({goal})"
        )
    if "grid" in data:
        grid = _variable(data, "constant_data", "grid", ("row", "col"))
        height, width = grid.shape
        if height * width != n_states:
            raise RunError(
                f"constant_data 'grid' has {height}x{width} cells but 'next_state' {n_states} "
                "states"
            )
        row = _int_attr(attrs, "start_row", minimum=0, below=height)
        col = _int_attr(attrs, "start_col", minimum=0, below=width)
        if row * width + col != start:
            raise RunError(
                f"attributes 'start_row', 'start_col' = ({row}, {col}) are cell "
                f"{row * width + col}, not 'start_state' = {start}"
            )

    posterior = dt["posterior"].to_dataset()
    values = {
        name: _variable(posterior, "posterior", name, dims)
        for name, dims in _POSTERIOR_DIMS.items()
    }
    sizes = dict(posterior.sizes)
    if sizes["chain"] == 0 or sizes["draw"] == 0:
        raise RunError(
            f"the posterior holds no draws ({sizes['chain']} chains x {sizes['draw']} draws)"
        )
    for dim, first in (("time", 0), ("step", 1)):
        if sizes[dim] != horizon:
            raise RunError(
                f"attribute 'horizon' = {horizon} but the posterior has {sizes[dim]} {dim!r} "
                "entries"
            )
        if dim in posterior.coords and not np.array_equal(
            posterior[dim].values, np.arange(first, first + horizon)
        ):
            raise RunError(f"posterior coordinate {dim!r} must be {first}..{first + horizon - 1}")
    _in_range(values["actions"], "posterior 'actions'", n_actions, "action ids")
    _in_range(values["states"], "posterior 'states'", n_states, "state indices")
    for name in ("rewards", "return"):
        if not np.issubdtype(values[name].dtype, np.number):
            raise RunError(f"posterior {name!r} must be numbers, got dtype {values[name].dtype}")
    full = np.concatenate([np.full((*values["actions"].shape[:2], 1), start),
                           values["states"]], axis=-1)  # fmt: skip
    rewards = values["rewards"]
    dynamics = "constant_data " + " and ".join(repr(name) for name in (names[0], "reward"))
    check_steps(values["actions"], full, rewards, start, outcomes, "posterior ", dynamics)
    scale = max(1.0, float(np.abs(outcomes[2]).max())) * max(1, rewards.shape[-1])
    if not np.allclose(values["return"], rewards.sum(axis=-1), rtol=1e-6, atol=1e-6 * scale):
        raise RunError("posterior 'return' is not the sum of posterior 'rewards'")

    for name in ("sample_stats", "exact", "reference"):
        if name in dt.children:
            _check_optional_group(dt[name].to_dataset(), name, sizes, n_states, n_actions)


def _attr(attrs, name):
    if name not in attrs:
        raise RunError(f"attribute {name!r} is missing")
    return attrs[name]


def _int_attr(attrs, name, minimum, below=None):
    value = _attr(attrs, name)
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise RunError(f"attribute {name!r} must be an int, got {value!r}")
    value = int(value)
    if value < minimum or (below is not None and value >= below):
        bounds = f">= {minimum}" if below is None else f"in [{minimum}, {below})"
        raise RunError(f"attribute {name!r} must be an int {bounds}, got {value}")
    return value


def _variable(data, group, name, dims):
    if name not in data:
        raise RunError(f"{group} variable {name!r} is missing")
    variable = data[name]
    if variable.dims != dims:
        raise RunError(f"{group} {name!r} must have dims {dims}, got {variable.dims}")
    return variable.values


def _in_range(values, what, size, kind):
    if not np.issubdtype(values.dtype, np.integer):
        raise RunError(f"{what} must be integer {kind}, got dtype {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= size):
        raise RunError(
            f"{what} must lie in [0, {size}), the {kind}; found {values.min()}..{values.max()}"
        )


def _check_optional_group(data, name, sizes, n_states, n_actions):
    if name == "sample_stats":
        for variable in data.data_vars.values():
            if variable.dims[:2] != ("chain", "draw") or variable.shape[:2] != (
                sizes["chain"],
                sizes["draw"],
            ):
                raise RunError(
                    f"sample_stats {variable.name!r} must have the posterior's chain and draw "
                    f"dims ({sizes['chain']}, {sizes['draw']}), got {dict(variable.sizes)}"
                )
        return
    horizon = sizes["time"]
    marginals = {"step": horizon + 1, "state": n_states}
    if name == "exact":
        expected = {
            "state_marginals": marginals,
            "action_marginals": {"time": horizon, "action": n_actions},
            "log_z": {},
            "expected_return": {},
        }
    else:
        expected = {"state_marginals": marginals, "state_marginals_se": marginals}
        expected |= {scalar: {} for scalar in REFERENCE_SCALARS}
        if not isinstance(data.attrs.get("kind"), str):
            raise RunError("reference attribute 'kind' must be a str")
    for variable, shape in expected.items():
        if variable not in data:
            raise RunError(f"{name} variable {variable!r} is missing")
        found = data[variable]
        if found.dims != tuple(shape) or found.shape != tuple(shape.values()):
            raise RunError(f"{name} {variable!r} must have sizes {shape}, got {dict(found.sizes)}")
        if not np.issubdtype(found.dtype, np.number) or not np.isfinite(found.values).all():
            raise RunError(f"{name} {variable!r} must be finite numbers")


def stored_outcomes(data):
    """The dynamics stored in a ``constant_data`` Dataset as outcome arrays (S, A, K):
    ``outcome_states``, ``outcome_probs``, ``outcome_rewards`` as stored, or the (S, A)
    ``next_state`` and ``reward`` of a run with one outcome per step as K = 1."""
    if "outcome_states" in data:
        return tuple(data[name].values for name in OUTCOME_NAMES)
    next_state = data["next_state"].values
    return next_state[..., None], np.ones((*next_state.shape, 1)), data["reward"].values[..., None]


def best_outcome(out_states, out_probs, out_rewards):
    """The state entered by the largest reward of a possible outcome (probability > 0).

    Parameters
    ----------
    out_states, out_probs, out_rewards : arrays, shape (S, A, K)

    Returns
    -------
    int
    """
    rewards = np.where(out_probs > 0, out_rewards, -np.inf)
    return int(out_states.flat[int(np.argmax(rewards))])


def check_steps(actions, states, rewards, start, outcomes, prefix, dynamics):
    """``RunError`` unless every step (s_t, a_t) -> (s_{t+1}, r_t) is an outcome of positive
    probability, with that outcome's reward, and the states begin at ``start``.

    Parameters
    ----------
    actions : int array, shape (..., T)
    states : int array, shape (..., T + 1), in [0, S)
    rewards : float array, shape (..., T)
    start : int
    outcomes : tuple of arrays, shape (S, A, K)
        ``outcome_states``, ``outcome_probs``, ``outcome_rewards``.
    prefix : str
        Put before the variable names in the message (e.g. ``"posterior "``).
    dynamics : str
        What the steps are checked against, for the message.
    """
    out_states, out_probs, out_rewards = outcomes
    if np.any(states[..., 0] != start):
        raise RunError(f"the {prefix}'states' do not begin at 'start_state'")
    scale = max(1.0, float(np.abs(out_rewards).max()))
    s, a = states[..., :-1], actions
    possible = (out_states[s, a] == states[..., 1:, None]) & (out_probs[s, a] > 0)
    bad = ~possible.any(axis=-1)
    if bad.any():
        t = int(np.argwhere(bad)[0][-1])
        raise RunError(
            f"{prefix}'states' at step {t + 1} are not a possible outcome of the states and "
            f"actions before them ({dynamics})"
        )
    paid = np.isclose(out_rewards[s, a], rewards[..., None], rtol=1e-6, atol=1e-6 * scale)
    bad = ~(possible & paid).any(axis=-1)
    if bad.any():
        t = int(np.argwhere(bad)[0][-1])
        raise RunError(
            f"{prefix}'states' and 'rewards' at time {t} are not a possible outcome of the "
            f"states and actions ({dynamics})"
        )
