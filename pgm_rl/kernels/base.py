"""What every pgm_rl kernel shares: the trajectory state, its init, the MH accept step and the
NumPyro adapter.

The kernel contract (BlackJAX style: pure functions over NamedTuples, the inverse temperature
passed per call). Every kernel module gives::

    state = init(key, world, horizon, beta, **params)   # a draw from the prior
    step = build_kernel(world, horizon, **params)
    state, info = step(key, state, beta)                # info has at least ``accept_prob``

with ``params`` the keyword parameters its :data:`~pgm_rl.kernels.registry.KERNELS` record
declares, so one compiled step serves every rung of replica exchange. The trajectory state,
:class:`RegenerationState`, always carries the start (), the actions (T,) and the outcome
indices (T,) of a trajectory: on deterministic dynamics (K = 1 outcome) the indices are all 0
and their log prior is 0; on a single start state the start is that state. One code path
serves both.

Your own model's terms. ``init`` and ``build_kernel`` also take ``log_factor``: None, or the
:class:`pgm_rl.model.TrajectoryFactor` f of a model that adds terms to the trajectory model.
The target is then ``p(trajectory | O) exp(f(trajectory))`` (at inverse temperature ``beta``
the tempered ``prior exp(beta R + log_factor.weight(beta) f)``); the state carries f at its
trajectory (``log_factor``, 0 without one) and each kernel lets f in where it belongs (its
module docstring says where).

:class:`PureKernelAdapter` turns a kernel into a :class:`numpyro.infer.mcmc.MCMCKernel`: it
reads the problem from the model (refusing models it cannot sample,
:func:`pgm_rl.model.trajectory_target`), holds the PRNG key, handles batched (vectorized)
chains and initial values, resets the running acceptance rate after warm-up, pickles, and
hands back the model's latent sites plus its deterministic sites through ``postprocess_fn``.
NumPyro applies ``postprocess_fn`` to every step's ``z`` in its compiled loop (``fori_collect``
transforms every step's state, warm-up and thinned-away steps included, before it decides to
keep it), so the deterministic sites ride along in ``z`` and postprocessing is the identity:
:class:`RegenerationState` carries the rollout (``states``, ``rewards``) the kernels compute
anyway, StepwiseMH its kept per-step values, TrajectoryMH the deterministic sites of the trace
that proposed its state. The model is traced there only where it adds deterministic sites of
its own, or in a Gibbs block.
"""

import copy
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from pgm_rl._sampling import positive_uniform
from pgm_rl.dynamics import draw_start, follow, rollout
from pgm_rl.model import trajectory_target
from pgm_rl.worlds import latent_sites as world_latents

__all__ = [
    "TRAJECTORY_LATENTS",
    "MHInfo",
    "PureKernelAdapter",
    "RegenerationState",
    "SamplerState",
    "TrajectoryKernel",
    "check_factor",
    "factor_at",
    "factor_change",
    "init",
    "init_state",
    "mh_accept",
    "with_rollout",
]

# The latent sites of pgm_rl.trajectory_model a kernel state can give, in the model's order.
TRAJECTORY_LATENTS = ("start", "actions", "outcomes")


class MHInfo(NamedTuple):
    """Outcome of one Metropolis-Hastings accept step (scalars)."""

    accept_prob: jax.Array
    is_accepted: jax.Array


def mh_accept(key, log_ratio, proposal, current):
    """Accept ``proposal`` with probability ``min(1, exp(log_ratio))``, in log space.

    ``log u < log_ratio`` with ``u ~ Uniform(0, 1)``; a NaN ratio is rejected (never
    accepted as in the notebook's ``min(0.0, nan)``). ``proposal`` and ``current`` are
    pytrees of the same structure. Returns ``(chosen, MHInfo)``.
    """
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    is_accepted = jnp.log(random.uniform(key, dtype=jnp.result_type(float))) < log_ratio
    chosen = jax.tree.map(lambda new, old: jnp.where(is_accepted, new, old), proposal, current)
    return chosen, MHInfo(jnp.exp(jnp.minimum(log_ratio, 0.0)), is_accepted)


def factor_at(log_factor, start, actions, outcomes, dtype):
    """f of the trajectory ``(start, actions, outcomes)`` (a scalar of ``dtype``), 0 without
    a ``log_factor``."""
    if log_factor is None:
        return jnp.zeros((), dtype)
    return jnp.asarray(log_factor(start, actions, outcomes), dtype)


def factor_change(log_factor, beta, new, old):
    """The change ``weight(beta) * (new - old)`` of the tempered log target from f (0 without
    a ``log_factor``; a NaN from ``-inf - -inf`` rejects in :func:`mh_accept`)."""
    if log_factor is None:
        return 0.0
    return log_factor.weight(beta) * (new - old)


class RegenerationState(NamedTuple):
    """The state every trajectory kernel carries (per chain).

    ``actions``: int32 (T,); ``ret``: scalar, the (unscaled) return, the sum of the rewards;
    ``outcomes``: int32 (T,), the outcome index of each step (see
    :func:`pgm_rl.trajectory_model`; all 0 on deterministic dynamics); ``start``: int32 (),
    the start state; ``log_factor``: scalar, the model's extra terms f at this trajectory
    (0 for the trajectory model itself); ``states``: int32 (T + 1,) and ``rewards``: (T,),
    the trajectory's rollout (:func:`pgm_rl.rollout`), which every kernel computes anyway
    and carries so that the adapter's postprocessing, applied to every step, needs none.

    :func:`init`, :func:`init_state` and every kernel's step give ``states`` and ``rewards``;
    a state built by hand may leave them None (a step fills them in:
    :func:`with_rollout`).
    """

    actions: jax.Array
    ret: jax.Array
    outcomes: jax.Array
    start: jax.Array
    log_factor: jax.Array
    states: jax.Array | None = None
    rewards: jax.Array | None = None


def init_state(world, actions, outcomes=None, start=None, log_factor=None):
    """The :class:`RegenerationState` at ``actions`` (T,), with its return.

    ``outcomes`` (T,) and ``start`` () default to 0s and the single start state; they are
    required where the world's dynamics or start are random (the ``ValueError`` of
    :func:`pgm_rl.rollout`). ``log_factor``: the model's f, or None.
    """
    actions = jnp.asarray(actions, jnp.int32)
    states, rewards = rollout(world, actions, start, outcomes)
    if outcomes is None:  # deterministic dynamics (rollout refused anything else)
        outcomes = jnp.zeros(actions.shape, jnp.int32)
    if start is None:  # a single start state (rollout refused anything else)
        start = jnp.argmax(jnp.asarray(world.start_probs))
    outcomes = jnp.asarray(outcomes, jnp.int32)
    start = jnp.asarray(start, jnp.int32)
    ret = jnp.sum(rewards, axis=-1)
    log_f = factor_at(log_factor, start, actions, outcomes, ret.dtype)
    return RegenerationState(actions, ret, outcomes, start, log_f, states, rewards)


def init(key, world, horizon, beta=None, log_factor=None, **params):
    """A :class:`RegenerationState` drawn from the prior: uniform actions, the start
    distribution, the dynamics (the contract's ``init``; ``beta`` and ``params`` are unused;
    ``log_factor`` is the model's f, or None)."""
    action_key, start_key, noise_key = random.split(key, 3)
    actions = random.randint(action_key, (horizon,), 0, world.n_actions, jnp.int32)
    start = draw_start(start_key, world)
    noise = positive_uniform(noise_key, (horizon,), jnp.asarray(world.outcome_probs).dtype)
    zeros = jnp.zeros(horizon, jnp.int32)
    states, rewards, outcomes, _ = follow(
        world, start, actions, zeros, noise, jnp.ones(horizon, bool)
    )
    ret = jnp.sum(rewards)
    log_f = factor_at(log_factor, start, actions, outcomes, ret.dtype)
    return RegenerationState(actions, ret, outcomes, start, log_f, states, rewards)


def with_rollout(world, state):
    """``state`` (a :class:`RegenerationState`) with ``states`` and ``rewards`` filled in by
    its rollout where they are None (a state built by hand); else ``state`` itself."""
    if state.states is not None and state.rewards is not None:
        return state
    states, rewards, _, _ = follow(world, state.start, state.actions, state.outcomes)
    return state._replace(states=states, rewards=rewards)


def init_from_params(world, init_params, log_factor=None):
    """The :class:`RegenerationState` at the latent sites ``init_params`` (a dict)."""
    return init_state(
        world,
        init_params["actions"],
        init_params.get("outcomes"),
        init_params.get("start"),
        log_factor,
    )


def check_factor(log_factor, world, horizon, num_draws=256, key=None):
    """Refuse a model whose extra terms are NaN or +inf on a trajectory.

    f is evaluated on ``num_draws`` trajectories drawn from the prior (``key``, default
    ``jax.random.key(0)``); -inf (a hard constraint) is allowed. Raises a ``ValueError``
    naming the site and one offending trajectory.
    """
    # Computed now, from the concrete world, even when the kernel is built inside a jitted
    # function (benchmarks/_runner.py).
    with jax.ensure_compile_time_eval():
        key = random.key(0) if key is None else key
        draws = jax.vmap(lambda k: init(k, world, horizon))(random.split(key, num_draws))
        values = jax.vmap(log_factor.site_values)(draws.start, draws.actions, draws.outcomes)
    for name, value in values.items():
        bad = np.flatnonzero(np.isnan(value) | (np.asarray(value) == np.inf))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"the model's site {name!r} is {float(value[i])} for the trajectory with "
                f"start {int(draws.start[i])}, actions {np.asarray(draws.actions[i]).tolist()}"
                f" and outcomes {np.asarray(draws.outcomes[i]).tolist()}; a term of the "
                "trajectory must be finite or -inf (a hard constraint)"
            )


def position_fn(sites):
    """``state -> {site: state.<site>}`` for the model's latent ``sites``."""
    return lambda state: {name: getattr(state, name) for name in sites}


class SamplerState(NamedTuple):
    """The state NumPyro's ``MCMC`` sees for a pgm_rl kernel (per chain).

    ``z`` is the dict of latent sites (the sample field), ``kernel_state`` the pure kernel's
    own NamedTuple (its fields reach ``extra_fields`` as ``"kernel_state.<field>"``),
    ``accept_prob`` that of the last step, ``mean_accept_prob`` its running mean since the end
    of warm-up (over the warm-up steps until then), ``i`` the step count.
    """

    z: dict
    kernel_state: Any
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    i: jax.Array
    rng_key: jax.Array


class PureKernelAdapter(MCMCKernel):
    """Base class: plug a pure ``(init, step)`` kernel into ``numpyro.infer.MCMC``.

    Subclasses implement :meth:`build`, returning three functions for the given model
    arguments: ``init_fn(key, init_params) -> kernel_state`` (``init_params`` a dict of latent
    sites or ``None``), ``step_fn(key, kernel_state) -> (kernel_state, info)`` and
    ``position_fn(kernel_state) -> dict of latent sites``.
    """

    def __init__(self, model):
        if not callable(model):
            raise TypeError(f"model must be a callable NumPyro model, got {model!r}")
        self._model = model
        self._step_fn = None
        self._position_fn = None
        self._postprocess = None  # set by build where the model need not be traced again
        self._num_warmup = 0

    @property
    def model(self):
        return self._model

    @property
    def sample_field(self):
        return "z"

    def build(self, model_args, model_kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        model_kwargs = model_kwargs or {}
        init_fn, self._step_fn, self._position_fn = self.build(model_args, model_kwargs)
        self._num_warmup = int(num_warmup)

        def init_one(key, params):
            key, init_key = random.split(key)
            kernel_state = init_fn(init_key, params)
            zero = jnp.zeros((), jnp.result_type(float))
            return SamplerState(
                self._position_fn(kernel_state), kernel_state, zero + 1.0, zero, jnp.array(0), key
            )

        if is_prng_key(rng_key):
            return init_one(rng_key, init_params)
        # Vectorized chains: NumPyro batches the keys and init_params along the chain axis.
        return jax.vmap(init_one)(rng_key, init_params)

    def _sample_one(self, state):
        key, step_key = random.split(state.rng_key)
        kernel_state, info = self._step_fn(step_key, state.kernel_state)
        i = state.i + 1
        # Running mean over warm-up, restarted at the first draw kept (as NumPyro's HMC does).
        count = jnp.where(i > self._num_warmup, i - self._num_warmup, i)
        mean = jnp.where(count == 1, 0.0, state.mean_accept_prob)
        mean = mean + (info.accept_prob - mean) / count
        return SamplerState(
            self._position_fn(kernel_state), kernel_state, info.accept_prob, mean, i, key
        )

    def sample(self, state, model_args, model_kwargs):
        if self._conditioned:  # a Gibbs block: the target moves with the other blocks' sites
            _, self._step_fn, self._position_fn = self.build(model_args, model_kwargs or {})
        if jnp.ndim(state.i) == 0:
            return self._sample_one(state)
        return jax.vmap(self._sample_one)(state)

    # -- as a block of numpyro.infer.Gibbs (with NUTS, say, for the model's other sites) --

    _conditioned = False

    def wrap_model(self, wrapper):
        """A copy on ``wrapper(model)``: how NumPyro's ``Gibbs`` conditions a block on the other
        blocks' sites. The copy rebuilds its step from the model arguments of each call (at
        trace time), so its target follows the current values of the other sites."""
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._step_fn = kernel._position_fn = None
        kernel._conditioned = True
        return kernel

    def refresh(self, state, model_args, model_kwargs):
        """``state`` with its cached log densities recomputed for the current model arguments
        (the other blocks' sites moved): :meth:`rescore` of the kernel state."""
        kernel_state = self.rescore(state.kernel_state, model_args, model_kwargs or {})
        return state._replace(kernel_state=kernel_state)

    def rescore(self, kernel_state, model_args, model_kwargs):  # pragma: no cover - abstract
        """The kernel state with what it caches of the target recomputed."""
        raise NotImplementedError

    def get_constrain_fn(self, model_args, model_kwargs):
        """Identity: the kernel's sites are discrete, their values already constrained."""
        return lambda z: z

    def postprocess_fn(self, model_args, model_kwargs):
        """``z -> z`` plus the model's deterministic sites. NumPyro applies it to every step's
        ``z`` inside its compiled loop (before thinning), so it must be cheap: what
        :meth:`build` set (the identity where ``z`` carries the deterministic sites: no
        rollout, no trace of the model), else the model traced at ``z``
        (:func:`deterministic_sites_fn`)."""
        if self._postprocess is not None:
            return self._postprocess
        return deterministic_sites_fn(self._model, model_args, model_kwargs or {})

    def get_diagnostics_str(self, state):
        return f"acc. prob={float(state.mean_accept_prob):.2f}"

    def __getstate__(self):
        """Pickle without the compiled closures; :meth:`init` rebuilds them (as NumPyro's kernels)."""
        state = self.__dict__.copy()
        state["_step_fn"] = None
        state["_position_fn"] = None
        state["_postprocess"] = None
        return state


class TrajectoryKernel(PureKernelAdapter):
    """Template for kernels over the latent sites of :func:`pgm_rl.trajectory_model`.

    :meth:`build` reads the target from the model (:func:`pgm_rl.model.trajectory_target`:
    ``(world, horizon, beta)`` and the model's extra terms f, refusing other latent sites by
    name), checks f on prior draws (:func:`check_factor`), builds the step with
    :meth:`build_step_at`, and gives back the model's latent sites (``"actions"``, plus
    ``"outcomes"`` and ``"start"`` where the model's trace has them) from the kernel state,
    with its ``"states"`` and ``"rewards"`` where they are the model's only deterministic
    sites (postprocessing is then the identity) and the kernel runs outside a Gibbs block.
    Subclasses give :meth:`build_step` (the module's ``build_kernel`` with the kernel's
    parameters); those whose step or state differ override :meth:`build_step_at`,
    :meth:`init_kernel_state`, :meth:`state_at` or :meth:`position`. Initial values: a draw
    from the prior (the module's ``init``), or ``init_params``. ``log_factor`` is f (a
    :class:`pgm_rl.model.TrajectoryFactor`) or None throughout.
    """

    def build_step(self, world, horizon, log_factor=None):  # pragma: no cover - abstract
        """The pure ``step(key, state, beta)`` (a replica-exchange rung)."""
        raise NotImplementedError

    def build_step_at(self, world, horizon, beta, log_factor=None):
        """The pure step for the model's ``beta``; by default :meth:`build_step`."""
        return self.build_step(world, horizon, log_factor)

    def init_kernel_state(self, key, world, horizon, beta, log_factor=None):
        """The kernel state drawn from the prior: :func:`init`."""
        return init(key, world, horizon, beta, log_factor)

    def state_at(self, world, horizon, init_params, log_factor=None):
        """The kernel state at the latent sites ``init_params`` (a dict)."""
        return init_from_params(world, init_params, log_factor)

    def position(self, sites):
        """``kernel_state -> dict`` of the model's latent ``sites``."""
        return position_fn(sites)

    def build(self, model_args, model_kwargs):
        world, horizon, beta, log_factor = trajectory_target(
            self._model, model_args, model_kwargs, kernel=type(self).__name__
        )
        if log_factor is not None and not self._conditioned:
            check_factor(log_factor, world, horizon)
        step = self.build_step_at(world, horizon, beta, log_factor)
        # trajectory_target has checked that the model's latent sites are exactly these: no
        # second trace of the model.
        sites = ("actions", *world_latents(world))
        sites = tuple(name for name in TRAJECTORY_LATENTS if name in sites)
        # The model's own deterministic sites only: the rollout the kernel state carries rides
        # along in ``z``, so postprocessing is the identity (no rollout, no trace of the model).
        # Not in a Gibbs block, where ``z`` holds the block's latent sites only.
        own_sites = ("states", "rewards")
        self._postprocess = None
        if not self._conditioned and set(own_sites) == _deterministic_sites(
            self._model, model_args, model_kwargs
        ):
            sites, self._postprocess = (*sites, *own_sites), dict

        def init_fn(key, init_params):
            if init_params is None:
                return self.init_kernel_state(key, world, horizon, beta, log_factor)
            return self.state_at(world, horizon, init_params, log_factor)

        return init_fn, lambda key, state: step(key, state, beta), self.position(sites)

    def rescore(self, kernel_state, model_args, model_kwargs):
        """The state's ``log_factor`` recomputed under the current model arguments
        (:meth:`rescore_state`)."""
        target = trajectory_target(self._model, model_args, model_kwargs, type(self).__name__)
        return self.rescore_state(kernel_state, target.factor)

    def rescore_state(self, kernel_state, log_factor):
        """A :class:`RegenerationState` with f recomputed at its trajectory."""
        return kernel_state._replace(
            log_factor=factor_at(
                log_factor,
                kernel_state.start,
                kernel_state.actions,
                kernel_state.outcomes,
                kernel_state.ret.dtype,
            )
        )


def _deterministic_sites(model, model_args, model_kwargs):
    """The names of the model's deterministic sites (one trace of the model, at build)."""
    model_trace = trace(seed(model, 0)).get_trace(*model_args, **model_kwargs)
    return {name for name, site in model_trace.items() if site["type"] == "deterministic"}


def deterministic_sites_fn(model, model_args, model_kwargs):
    """A function ``z -> z`` plus the model's deterministic sites, given latent values ``z``."""

    def postprocess(z):
        model_trace = trace(substitute(seed(model, 0), data=z)).get_trace(
            *model_args, **model_kwargs
        )
        sites = {
            name: site["value"]
            for name, site in model_trace.items()
            if site["type"] == "deterministic"
        }
        return {**z, **sites}

    return postprocess


def latent_sites(model_trace):
    """Names of the unobserved sample sites of a NumPyro trace, in order."""
    return [
        name
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    ]


def trace_log_likelihood(model_trace):
    """Sum of the log-probabilities of the observed sites (``numpyro.factor`` included)."""
    total = jnp.zeros(())
    for site in model_trace.values():
        if site["type"] == "sample" and site["is_observed"]:
            log_prob = site["fn"].log_prob(site["value"])
            if site["scale"] is not None:
                log_prob = site["scale"] * log_prob
            total = total + jnp.sum(log_prob)
    return total
