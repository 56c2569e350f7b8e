"""Sampling primitives shared by the exact sampler, the kernels and SMC.

Each draws from a discrete distribution given unnormalised weights with as few random numbers
as possible (one uniform per draw, inverse CDF) and never picks a category of weight 0.
"""

import jax.numpy as jnp
from jax import random

__all__ = ["inverse_cdf_sample", "multinomial_resample", "positive_uniform"]


def positive_uniform(key, shape, dtype):
    """Uniform(0, 1) draws of ``shape`` that are never 0, for :func:`inverse_cdf_sample`."""
    return random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)


def inverse_cdf_sample(u, probs):
    """The category of ``u`` in (0, 1) under (unnormalised) ``probs`` (A,); an int scalar.

    One uniform per draw instead of A Gumbels; a category of probability 0 is never chosen
    (``u > 0`` and the strict comparison keep both ends closed to it).
    """
    cdf = jnp.cumsum(probs)
    return jnp.sum(cdf[:-1] < u * cdf[-1])


def multinomial_resample(key, log_weights, num):
    """``num`` iid ancestor indices drawn with probabilities ``softmax(log_weights)`` (N,).

    Inverse-CDF sampling with ``searchsorted``: O(N + num log N) time and O(N + num) memory.
    Returns int32 indices, shape (num,).
    """
    weights = jnp.exp(log_weights - jnp.max(log_weights))
    cdf = jnp.cumsum(weights)
    u = random.uniform(key, (num,), cdf.dtype) * cdf[-1]
    index = jnp.searchsorted(cdf, u, side="right")
    return jnp.minimum(index, log_weights.shape[0] - 1).astype(jnp.int32)
