"""The notebook's full-trajectory sampler: independence MH with fresh prior rollouts as proposals.

The proposal is the prior, so the MH ratio is the likelihood ratio:
accept with ``log u < loglik(new) - loglik(old)``.

Two forms. The kernel contract's :func:`init` and :func:`build_kernel` work on the arrays of
:func:`pgm_rl.trajectory_model` (a :class:`~pgm_rl.kernels.base.RegenerationState`; one
whole-trajectory prior proposal per step), and serve as a replica-exchange rung. The adapter
:class:`TrajectoryMH` samples any NumPyro model whose latent sites can all be drawn from their
priors, through :func:`general_init` and :func:`build_general_kernel`: the likelihood is
everything observed (``numpyro.factor`` sites included).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.handlers import seed, substitute, trace

from pgm_rl.kernels.base import (
    PureKernelAdapter,
    init,
    latent_sites,
    mh_accept,
    trace_log_likelihood,
)
from pgm_rl.kernels.suffix_mh import regenerate_suffix

__all__ = [
    "TrajectoryMH",
    "TrajectoryMHState",
    "build_general_kernel",
    "build_kernel",
    "general_init",
    "init",
]


class TrajectoryMHState(NamedTuple):
    """``position``: dict of latent sites; ``log_likelihood``: scalar at that position;
    ``deterministic``: dict of the model's deterministic sites at that position, carried from
    the trace that proposed it (so they need no second trace), or None."""

    position: dict
    log_likelihood: jax.Array
    deterministic: dict | None = None


def build_kernel(world, horizon, log_factor=None):
    """The contract's step on :func:`pgm_rl.trajectory_model`'s arrays, ``step(key, state, beta)``:
    one whole-trajectory prior proposal (start, actions, outcomes), MH accept (the model's
    extra terms ``log_factor``, if any, in the acceptance)."""

    def step(key, state, beta):
        return regenerate_suffix(key, state, beta, 0, world, log_factor)

    return step


def general_init(position, log_likelihood_fn):
    """The general model's state at ``position`` (dict of latent sites)."""
    return TrajectoryMHState(position, log_likelihood_fn(position))


def build_general_kernel(prior_sample_fn):
    """One independence-MH step on any model; ``prior_sample_fn(key) -> (position,
    log_likelihood)`` or ``(position, log_likelihood, deterministic)`` (the fields of
    :class:`TrajectoryMHState`); ``step(key, state) -> (state, info)``."""

    def step(key, state):
        proposal_key, accept_key = jax.random.split(key)
        proposal = TrajectoryMHState(*prior_sample_fn(proposal_key))
        return mh_accept(
            accept_key, proposal.log_likelihood - state.log_likelihood, proposal, state
        )

    return step


class TrajectoryMH(PureKernelAdapter):
    """Independence Metropolis-Hastings with the prior as proposal (the notebook's sampler).

    Parameters
    ----------
    model : callable
        A NumPyro model whose latent sites can be sampled from their priors, e.g.
        :func:`pgm_rl.trajectory_model`.

    Examples
    --------
    >>> mcmc = MCMC(TrajectoryMH(pgm_rl.trajectory_model), num_warmup=500, num_samples=1000)
    >>> mcmc.run(jax.random.key(0), env, horizon, beta)
    """

    def build(self, model_args, model_kwargs):
        model = self._model
        prototype = trace(seed(model, 0)).get_trace(*model_args, **model_kwargs)
        sites = latent_sites(prototype)
        # The deterministic sites ride along in the state (and in ``z``): NumPyro's
        # postprocessing, applied to every step, then traces nothing. Not in a Gibbs block,
        # where they move with the other blocks' sites.
        carried = [
            name
            for name, site in prototype.items()
            if site["type"] == "deterministic" and not self._conditioned
        ]
        self._postprocess = None if self._conditioned else dict

        def deterministic(model_trace):
            if self._conditioned:
                return None
            return {name: jnp.asarray(model_trace[name]["value"]) for name in carried}

        def prior_sample(key):
            model_trace = trace(seed(model, key)).get_trace(*model_args, **model_kwargs)
            position = {name: model_trace[name]["value"] for name in sites}
            return position, trace_log_likelihood(model_trace), deterministic(model_trace)

        def state_at(position):
            model_trace = trace(substitute(seed(model, 0), data=position)).get_trace(
                *model_args, **model_kwargs
            )
            return TrajectoryMHState(
                position, trace_log_likelihood(model_trace), deterministic(model_trace)
            )

        def init_fn(key, init_params):
            if init_params is None:
                position = prior_sample(key)[0]
            else:
                position = {  # the model's own dtypes, so the chain's carry keeps its type
                    name: jnp.asarray(init_params[name], prototype[name]["value"].dtype)
                    for name in sites
                }
            return state_at(position)

        def position_fn(state):
            if state.deterministic is None:
                return state.position
            return {**state.position, **state.deterministic}

        return init_fn, build_general_kernel(prior_sample), position_fn

    def rescore(self, kernel_state, model_args, model_kwargs):
        """The log-likelihood at the state's position under the current model arguments."""
        model_trace = trace(substitute(seed(self._model, 0), data=kernel_state.position)).get_trace(
            *model_args, **model_kwargs
        )
        return kernel_state._replace(log_likelihood=trace_log_likelihood(model_trace))

    def build_step(self, world, horizon, log_factor=None):
        """The array-level form (:func:`build_kernel`), for replica exchange."""
        return build_kernel(world, horizon, log_factor)
