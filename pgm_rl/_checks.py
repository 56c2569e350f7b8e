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
    """The most memory, in bytes, one call may plan to allocate: half of the physical memory."""
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        available = 8 * 2**30
    return available // 2


def check_fits_in_memory(needed, name, value, what, advice):
    """Raise ``ValueError`` if ``needed`` bytes exceed :func:`memory_limit`.

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
        raise ValueError(
            f"{name}={value} needs about {needed / 2**30:.3g} GiB for {what}; at most "
            f"{limit / 2**30:.1f} GiB (half of this machine's memory) is allowed: {advice}"
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
