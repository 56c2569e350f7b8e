"""Argument checks shared by the public functions: clear errors instead of NaNs or JAX tracebacks."""

import math
import numbers

import jax
import numpy as np


def check_horizon(horizon):
    """Return ``horizon`` as a positive ``int`` or raise ``TypeError``/``ValueError``."""
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral):
        raise TypeError(f"horizon must be a positive int, got {horizon!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be a positive int (>= 1), got {horizon}")
    return int(horizon)


def check_beta(beta):
    """Return ``beta`` (a finite number >= 0) or raise; traced values pass through unchecked."""
    if isinstance(beta, jax.core.Tracer):
        return beta
    if isinstance(beta, bool) or not isinstance(beta, (numbers.Real, np.ndarray, jax.Array)):
        raise TypeError(f"beta must be a finite real number >= 0, got {beta!r}")
    if np.ndim(beta) != 0:
        raise TypeError(f"beta must be a scalar, got an array of shape {np.shape(beta)}")
    value = float(beta)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"beta must be a finite real number >= 0, got {value}")
    return beta


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
