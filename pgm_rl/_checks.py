"""Argument checks shared by the public functions: clear errors instead of NaNs or JAX tracebacks."""

import math
import numbers
import os

import jax
import jax.numpy as jnp
import numpy as np

# Step, state and particle indices are int32 on the device.
INT32_MAX = 2**31 - 1
MAX_HORIZON = INT32_MAX - 1


def check_horizon(horizon):
    """Return ``horizon`` as an ``int`` in [1, 2**31 - 2] or raise ``TypeError``/``ValueError``.

    The T + 1 steps of a trajectory are indexed with int32, hence the upper bound.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral):
        raise TypeError(f"horizon must be a positive int, got {horizon!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be a positive int (>= 1), got {horizon}")
    if horizon > MAX_HORIZON:
        raise ValueError(
            f"horizon must be at most {MAX_HORIZON} (the T + 1 steps are indexed with int32), "
            f"got {horizon}"
        )
    return int(horizon)


def check_beta(beta):
    """Return ``beta`` (a finite real number >= 0) or raise; traced values pass through unchecked.

    Accepts Python and NumPy reals and 0-d real (integer or floating) arrays; refuses bools,
    complex numbers, strings and numbers beyond the float range with an error naming beta.
    """
    if isinstance(beta, jax.core.Tracer):
        return beta
    if isinstance(beta, (bool, np.bool_)) or not isinstance(
        beta, (numbers.Real, np.ndarray, jax.Array)
    ):
        raise TypeError(f"beta must be a finite real number >= 0, got {_short_repr(beta)}")
    if np.ndim(beta) != 0:
        raise TypeError(f"beta must be a scalar, got an array of shape {np.shape(beta)}")
    dtype = getattr(beta, "dtype", None)
    if dtype is not None and not (
        jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    ):
        raise TypeError(f"beta must be a finite real number >= 0, got a 0-d array of dtype {dtype}")
    try:
        value = float(beta)
    except OverflowError:
        raise ValueError(
            f"beta must be a finite real number >= 0, got {_short_repr(beta)}, beyond the float "
            "range (about 1.8e308)"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"beta must be a finite real number >= 0, got {value}")
    return beta


def _short_repr(value, width=60):
    text = repr(value)
    return text if len(text) <= width else f"{text[: width - 25]}... ({len(text)} characters)"


def check_positive_int(value, name):
    """Return ``value`` as an int >= 1 or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value}")
    return int(value)


def check_key(key, name="key"):
    """Raise ``TypeError`` unless ``key`` is a single JAX PRNG key."""
    try:
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            ok = key.shape == ()
        else:
            ok = key.shape == (2,) and key.dtype == np.uint32
    except AttributeError:
        ok = False
    if not ok:
        raise TypeError(f"{name} must be a single JAX PRNG key (jax.random.key(seed)), got {key!r}")
    return key


def check_index_array(values, name, what):
    """``values`` as a JAX integer array, or ``TypeError`` naming ``name`` (e.g. for strings).

    Only the dtype is checked here (JAX cannot even hold strings); the range is the caller's.
    Traced values pass through.
    """
    if isinstance(values, jax.Array):
        array = values
    else:
        try:
            array = np.asarray(values)
        except ValueError:
            raise ValueError(f"{name} must be a rectangular integer array of {what}") from None
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array of {what}, got dtype {array.dtype}")
    return jnp.asarray(array)


# ----------------------------------------------------------------------------- sizes and ranges

# Totals are kept below a quarter of the dtype's largest value: the backward pass and SMC take
# differences of two totals (up to twice a total) and add small log terms.
RANGE_HEADROOM = 4.0
ENABLE_FLOAT64 = 'enable float64 first: jax.config.update("jax_enable_x64", True)'


def working_dtype():
    """The floating dtype JAX computes in: float64 if ``jax_enable_x64`` is set, else float32."""
    return np.dtype(np.float64 if jax.config.jax_enable_x64 else np.float32)


def itemsize():
    """Bytes per float of :func:`working_dtype` (8 or 4)."""
    return working_dtype().itemsize


def memory_limit():
    """The most memory, in bytes, one call may plan to allocate.

    Half of the smallest of: this machine's physical memory, the process's address-space limit
    (``resource.RLIMIT_AS``, ``ulimit -v``) and the memory limit of its cgroups (v2
    ``memory.max``, v1 ``memory.limit_in_bytes``, of its own cgroup and every parent).
    """
    return _memory_limit()[0]


def _memory_limit():
    """``(memory_limit(), what it is half of)``."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 8 * 2**30
    limits = [(physical, "this machine's memory")]
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append((soft, "the address-space limit set by ulimit -v"))
    except (ImportError, OSError, ValueError):
        pass
    cgroup = _cgroup_memory_limit()
    if cgroup is not None:
        limits.append((cgroup, "the cgroup memory limit"))
    total, what = min(limits, key=lambda limit: limit[0])
    return total // 2, what


# Where the cgroup limits are read (module constants: tests point them at their own files).
_PROC_CGROUP = "/proc/self/cgroup"
_CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_memory_limit():
    """The smallest memory limit, in bytes, of this process's cgroup and its parents; or None.

    Reads ``/proc/self/cgroup``: the v2 line ``0::PATH`` gives ``<root>/PATH/memory.max``, a v1
    line naming the ``memory`` controller gives ``<root>/memory/PATH/memory.limit_in_bytes``;
    each parent up to the mount's root is read too (a container's own limit sits there). "max"
    and unreadable files mean no limit.
    """
    try:
        with open(_PROC_CGROUP) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    files = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            base, leaf = _CGROUP_ROOT, "memory.max"
        elif "memory" in controllers.split(","):
            base, leaf = os.path.join(_CGROUP_ROOT, "memory"), "memory.limit_in_bytes"
        else:
            continue
        names = [name for name in path.split("/") if name]
        files += [os.path.join(base, *names[:depth], leaf) for depth in range(len(names) + 1)]
    values = []
    for file in files:
        try:
            with open(file) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            values.append(int(text))
    return min(values, default=None)


def check_fits_in_memory(needed, name, value, what, advice):
    """Raise ``ValueError`` if ``needed`` bytes exceed :func:`memory_limit`.

    The one-line message gives the estimate, the limit and what the limit is half of.

    Parameters
    ----------
    needed : int or float
        Estimated bytes the call would allocate.
    name : str
        The argument to blame, e.g. ``"horizon"``.
    value : object
        Its value, shown in the message.
    what : str
        What the memory is for, e.g. ``"the (T, S, A) policy"``.
    advice : str
        What to do instead, e.g. ``"use a shorter horizon"``.
    """
    limit = memory_limit()
    if needed > limit:
        half, source = _memory_limit()
        source = f"half of {source}" if half == limit else "the memory limit"
        raise ValueError(
            f"{name}={value} needs about {needed / 2**30:.3g} GiB for {what}; at most "
            f"{limit / 2**30:.3g} GiB ({source}) is allowed: {advice}"
        )


def trajectory_draw_bytes(horizon, n_states=None):
    """Bytes one stored trajectory draw takes, an estimate for the memory checks.

    Its actions (T), states (T + 1), rewards (T) and return as 8-byte numbers; with
    ``n_states`` S also its (T + 1, S) state-occupancy indicators as floats, which the
    diagnostics (R-hat, ESS, the comparison to exact) build. (Measured: ``to_datatree`` of
    4 x 10**6 draws, T = 10, grows the process by 228 bytes a draw, this gives 256; ``pgm-rl
    sample`` at T = 5 on 36 states by 2190 bytes a draw, the CLI's estimate is 2136.)
    """
    stored = 8 * (3 * horizon + 2)
    return stored if n_states is None else stored + 8 * (horizon + 1) * n_states


def check_draws_fit(chains, samples, bytes_per_draw, what):
    """Raise ``ValueError`` naming ``samples`` if ``chains * samples`` draws of
    ``bytes_per_draw`` bytes each (``what`` they hold) would not fit in memory."""
    check_fits_in_memory(
        chains * samples * bytes_per_draw,
        "samples",
        samples,
        f"{chains} chain{'s' if chains != 1 else ''} x {samples} draws ({what})",
        "use fewer samples or chains",
    )


def check_tree_fits(source):
    """Raise ``ValueError`` if :func:`pgm_rl.diagnostics.to_datatree` of ``source`` would not
    fit in memory (its copy of the draws, :func:`trajectory_draw_bytes`); checked from the shape
    of the actions only. Sources it cannot read pass (``to_datatree`` names what is wrong)."""
    try:
        if hasattr(source, "get_samples"):  # a finished numpyro MCMC: no copy is made here
            actions = source.get_samples(group_by_chain=True)["actions"]
        elif hasattr(source, "_asdict"):
            actions = source.actions
        else:
            actions = source["actions"]
        shape = tuple(int(n) for n in np.shape(actions))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return
    if len(shape) < 2:
        return
    draws, horizon = math.prod(shape[:-1]), shape[-1]
    label = " x ".join(str(n) for n in shape[:-1])  # one copy: the tree
    check_fits_in_memory(
        draws * trajectory_draw_bytes(horizon),
        "source",
        f"<{label} draws of T={horizon}>",
        "the run's tree (actions, states, rewards and returns)",
        "thin the draws first (e.g. actions[:, ::10]) or use fewer",
    )


def check_fit_memory(mdp, horizon, num_steps, objective="exact", num_particles=64):
    """Raise ``ValueError`` if fitting a policy would not fit in memory; blames the largest part.

    Estimate (8-byte floats): about 8 arrays of the (T, S, A) policy's size (logits, gradient,
    optimizer state, the forward pass and the executed policy's evaluation); 4 copies of the
    ELBO trace (``num_steps`` floats); for ``"score"`` about 10 arrays of (num_particles, T + 1)
    per step (the sampled trajectories, their log-probabilities and rewards to go).
    """
    parts = [
        (
            8 * 8 * horizon * mdp.n_states * mdp.n_actions,
            "horizon",
            horizon,
            "use a shorter horizon",
        ),
        (4 * 8 * num_steps, "num_steps", num_steps, "use fewer steps"),
    ]
    if objective == "score" and isinstance(num_particles, numbers.Integral):
        parts.append(
            (
                10 * 8 * num_particles * (horizon + 1),
                "num_particles",
                num_particles,
                "use fewer particles or a shorter horizon",
            )
        )
    needed = sum(part[0] for part in parts)
    _, name, value, advice = max(parts, key=lambda part: part[0])
    check_fits_in_memory(
        needed,
        name,
        value,
        f"fitting a policy (T={horizon}, {mdp.n_states} states x {mdp.n_actions} actions, "
        f"{num_steps} steps: the (T, S, A) policy and its gradient, the ELBO trace"
        + (f", {num_particles} trajectories a step" if objective == "score" else "")
        + ")",
        advice,
    )


def check_int32(value, name, limit=INT32_MAX, why="indices are int32"):
    """Raise ``ValueError`` if the int ``value`` exceeds ``limit``; return it."""
    if value > limit:
        raise ValueError(f"{name} must be at most {limit} ({why}), got {value}")
    return value


def max_abs(values):
    """``max |values|`` as a Python float (0.0 for an empty array); None for traced values."""
    if isinstance(values, jax.core.Tracer):
        return None
    values = np.asarray(values)
    return float(np.max(np.abs(values))) if values.size else 0.0


def check_no_overflow(reward, horizon, beta=None):
    """Raise ``ValueError`` if rewards, beta or their products overflow the working dtype.

    With ``R = max |reward|`` and ``M`` the largest value of :func:`working_dtype`: ``R`` and
    ``beta`` must be at most ``M``, and ``beta * R`` (a step's log-likelihood),
    ``horizon * R`` (the largest return) and ``horizon * beta * R`` (the largest
    log-likelihood) at most ``M / RANGE_HEADROOM``. Beyond that log Z, policies and weights
    come out NaN or inf. The message names the product that overflows and, in float32,
    suggests float64 where that would hold it. Traced ``reward`` or ``beta`` are not checked.

    Parameters
    ----------
    reward : array, shape (S, A)
    horizon : int
    beta : float, optional
        None where the caller does not scale rewards by beta (e.g. ``most_probable_path``).
    """
    big = max_abs(reward)
    if big is None:
        return
    if isinstance(beta, jax.core.Tracer):
        beta = None
    # (what, its factors, meaning, value, headroom, what to shrink)
    terms = [("max |reward|", None, "the largest reward", big, 1.0, "smaller rewards")]
    if beta is not None:
        beta = float(beta)
        terms += [
            ("beta", None, "the inverse temperature", beta, 1.0, "a smaller beta"),
            (
                "beta * max |reward|",
                f"{beta:.3g} * {big:.3g}",
                "a step's largest log-likelihood",
                beta * big,
                RANGE_HEADROOM,
                "a smaller beta or smaller rewards",
            ),
        ]
    terms.append(
        (
            "horizon * max |reward|",
            f"{horizon} * {big:.3g}",
            "the largest return",
            horizon * big,
            RANGE_HEADROOM,
            "a shorter horizon or smaller rewards",
        )
    )
    if beta is not None:
        terms.append(
            (
                "horizon * beta * max |reward|",
                f"{horizon} * {beta:.3g} * {big:.3g}",
                "a trajectory's largest log-likelihood",
                horizon * beta * big,
                RANGE_HEADROOM,
                "a shorter horizon, a smaller beta or smaller rewards",
            )
        )
    dtype = working_dtype()
    failed = _first_overflow(terms, dtype)
    if failed is None:
        return
    label, factors, meaning, value, headroom, smaller = failed
    limit = float(np.finfo(dtype).max) / headroom
    shown = f"{value:.3g}" if math.isfinite(value) else "more than 1.8e308"
    if factors is not None:
        shown = f"{factors} = {shown}"
    allowed = f"at most {limit:.3g}" + (
        "" if headroom == 1.0 else f" (1/{headroom:g} of its range, room for differences)"
    )
    if dtype == np.float32 and _first_overflow(terms, np.dtype(np.float64)) is None:
        advice = ENABLE_FLOAT64
    else:
        advice = f"use {smaller}"
    raise ValueError(
        f"{label} = {shown} ({meaning}) overflows {dtype.name}, which allows {allowed}: {advice}"
    )


def _first_overflow(terms, dtype):
    """The first of ``check_no_overflow``'s terms beyond ``dtype``'s range, or None."""
    for term in terms:
        value, headroom = term[3], term[4]
        if value > float(np.finfo(dtype).max) / headroom:
            return term
    return None


def check_particles_fit(num_particles, horizon):
    """Raise ``ValueError`` naming ``num_particles`` if SMC's particle arrays would not fit.

    Particles are indexed with int32; a run keeps about four int32 and two float arrays of
    shape (T + 1, N) (ancestors, actions, paths and states; rewards and weights).
    """
    check_int32(num_particles, "num_particles", why="particles are indexed with int32")
    needed = num_particles * (horizon + 1) * (4 * 4 + 2 * itemsize())
    check_fits_in_memory(
        needed,
        "num_particles",
        num_particles,
        f"{num_particles} particles over horizon {horizon}",
        "use fewer particles (pool independent runs with pgm_rl.smc.pool_log_z instead)",
    )
    return num_particles


# ----------------------------------------------------------------------------- trajectories


def check_trajectories(mdp, actions, states, name, item, batch_ndim=None):
    """Given trajectories checked against ``mdp``, flattened to (N, T) and (N, T + 1) int arrays.

    The one check of trajectories a user hands in (IRL demonstrations, the samples a policy is
    fitted to): integer dtypes; shapes (..., T) and (..., T + 1) with T >= 1 and at least one
    trajectory; actions and states in range; starts the start distribution allows and moves
    the dynamics allow. Errors name ``name`` and, for a start or a move, the trajectory (its
    index over the batch axes) and the step.

    Parameters
    ----------
    mdp : TabularMDP
    actions : array_like, shape (..., T)
    states : array_like, shape (..., T + 1)
    name : str
        Where the arrays came from, e.g. ``"demonstrations"`` (messages say
        ``demonstrations['actions']``).
    item : str
        What one trajectory is called, e.g. ``"demonstration"``.
    batch_ndim : int, optional
        The number of batch axes required (1 for (N, T)); None allows any number (also none).

    Returns
    -------
    actions : ndarray, shape (N, T)
    states : ndarray, shape (N, T + 1)

    Raises
    ------
    TypeError
        For non-integer (or bool) arrays.
    ValueError
        For ragged arrays, wrong shapes, no trajectory, values out of range, an impossible start
        or an impossible move.
    """
    actions = check_actions(actions, mdp.n_actions, name, item, batch_ndim)
    states = _integer_array(states, name, "states")
    axes = _batch_axes(batch_ndim)
    batch, horizon = actions.shape[:-1], actions.shape[-1]
    if states.shape != (*batch, horizon + 1):
        raise ValueError(
            f"{name}['states'] must have shape ({axes}, T + 1) = {(*batch, horizon + 1)} to "
            f"match 'actions' {actions.shape} (horizon T = {horizon}), got {states.shape}"
        )
    actions, states = actions.reshape(-1, horizon), states.reshape(-1, horizon + 1)
    if states.min() < 0 or states.max() >= mdp.n_states:
        raise ValueError(f"{name}['states'] must lie in [0, {mdp.n_states}), the state indices")

    def index(i):  # the batch index of flattened trajectory i
        return tuple(int(j) for j in np.unravel_index(i, batch)) if batch else ()

    bad_start = np.flatnonzero(~(np.asarray(mdp.start_probs)[states[:, 0]] > 0))
    if bad_start.size:
        i = int(bad_start[0])
        where = ", ".join(str(j) for j in (*index(i), 0))
        raise ValueError(
            f"{name}['states'][{where}] = {int(states[i, 0])} is not a possible start state of "
            "env (probability 0)"
        )
    ns, probs = np.asarray(mdp.outcome_states), np.asarray(mdp.outcome_probs)
    here, there = states[:, :-1], states[:, 1:]
    possible = np.any((ns[here, actions] == there[..., None]) & (probs[here, actions] > 0), -1)
    if not possible.all():
        i, t = (int(x) for x in np.argwhere(~possible)[0])
        raise ValueError(
            f"{item} {', '.join(map(str, index(i))) or 0} makes an impossible move at step {t}: "
            f"action {int(actions[i, t])} in state {int(here[i, t])} cannot reach state "
            f"{int(there[i, t])} under env's dynamics (likelihood zero)"
        )
    return actions, states


def check_actions(actions, n_actions, name, item, batch_ndim=None):
    """The actions of given trajectories as an int array (..., T), checked (see
    :func:`check_trajectories`, which calls it): integer dtype, T >= 1, at least one ``item``,
    ids in [0, ``n_actions``)."""
    actions = _integer_array(actions, name, "actions")
    ndim_ok = actions.ndim >= 1 if batch_ndim is None else actions.ndim == batch_ndim + 1
    if not ndim_ok or actions.shape[-1] < 1 or actions.size == 0:
        raise ValueError(
            f"{name}['actions'] must have shape ({_batch_axes(batch_ndim)}, T) with T >= 1 and "
            f"at least one {item}; got {actions.shape}"
        )
    if actions.min() < 0 or actions.max() >= n_actions:
        raise ValueError(f"{name}['actions'] must lie in [0, {n_actions}), the action ids")
    return actions


def _batch_axes(batch_ndim):
    return "..." if batch_ndim is None else ", ".join(("R", "N")[-batch_ndim:])


def _integer_array(values, name, key):
    if isinstance(values, jax.core.Tracer):
        raise TypeError(f"{name}['{key}'] must be a concrete integer array, not a traced one")
    try:
        array = np.asarray(values)
    except ValueError:
        raise ValueError(f"{name}['{key}'] must be a rectangular integer array") from None
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name}['{key}'] must be an integer array, got dtype {array.dtype}")
    return array
