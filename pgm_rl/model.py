"""The control-as-inference trajectory posterior as a NumPyro model.

p(a_0..a_{T-1} | O = 1) ∝ ∏_t (1/A) · exp(beta · r(s_t, a_t))
"""

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import seed, substitute, trace

from pgm_rl._checks import (
    check_beta,
    check_fits_in_memory,
    check_horizon,
    check_no_overflow,
    itemsize,
)
from pgm_rl._sampling import positive_uniform
from pgm_rl.dynamics import follow, rollout
from pgm_rl.worlds import check_env, latent_sites


class Trajectory(NamedTuple):
    """What :func:`trajectory_model` returns: one trajectory's arrays.

    ``actions`` (T,) int32; ``states`` (T + 1,) int32, the start included; ``rewards`` (T,);
    ``outcomes`` (T,) int32, the outcome index of each step, or ``None`` on deterministic
    dynamics. A wrapper model adds terms of the trajectory with them, e.g.
    ``numpyro.factor("revisits", -2.0 * revisits(traj.states))``.
    """

    actions: jax.Array
    states: jax.Array
    rewards: jax.Array
    outcomes: jax.Array | None


def trajectory_model(env, horizon, beta):
    """NumPyro model of optimal trajectories under a uniform action prior.

    Sites: ``"actions"`` (T,) drawn in ``plate("time", T)`` from a uniform Categorical
    (given by ``probs``: NumPyro then samples by inverse CDF, ~10x faster than Gumbel-max);
    deterministic ``"states"`` (T + 1,) and ``"rewards"`` (T,); factor ``"optimality"``
    = ``beta * sum(rewards)``, the log-likelihood of the optimality variables O_t = 1.

    On a stochastic MDP the posterior also "chooses" the start and the outcomes (Levine 2018,
    section 2.4), so they are latent sites too:

    - ``"start"`` (scalar int), when the start is random: ``Categorical(start_probs)``;
    - ``"outcomes"`` (T,) in ``plate("time")``, when the dynamics are random: the INDEX
      ``k_t`` of the outcome of step t among ``mdp.outcome_probs[s_t, a_t]`` (S, A, K), not the
      next state. Indices rather than states because two outcomes may enter the same state
      with different rewards (slippery CliffWalking), and because an index is always a valid
      value whatever the state it is read from (a state need not be reachable). Its
      distribution is :class:`OutcomeIndices`: step t's Categorical has the probabilities
      gathered along the path the site's own value (with the actions and start) follows, so
      ``log_density`` scores any value and the prior draws the steps in turn.

    ``"states"`` and ``"rewards"`` stay deterministic sites (the rollout of start, actions and
    outcomes), and on a deterministic MDP the sites are exactly those listed first.
    NumPyro's ``log_density``, ``Predictive``, ``DiscreteHMCGibbs`` and ``MixedHMC`` accept
    the model (the Gibbs kernels change one outcome index at a time; an impossible index,
    probability 0, is rejected).

    Your own model: a model that calls ``trajectory_model`` and adds ``numpyro.factor`` sites
    (or observed sites, or deterministic sites) that are functions of the returned
    :class:`Trajectory` samples p(trajectory) exp(f(trajectory)) with f the sum of the added
    terms; every registry kernel honours f (:func:`trajectory_target`).

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T.
    beta : float
        Inverse temperature, >= 0.

    Returns
    -------
    Trajectory
        The sampled trajectory (``outcomes`` None on deterministic dynamics).

    Raises
    ------
    ValueError
        If one trajectory's arrays would not fit in memory, or ``beta * max |reward|``, the
        largest return or ``horizon * beta * max |reward|`` overflows the working dtype.
    """
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = check_beta(beta)
    check_no_overflow(mdp.outcome_rewards, horizon, beta)
    # actions, states and rewards (T,) plus the scan's and NumPyro's copies of them
    check_fits_in_memory(
        4 * (horizon + 1) * (4 + itemsize()),
        "horizon",
        horizon,
        "one trajectory's arrays",
        "use a shorter horizon",
    )
    latents = latent_sites(mdp)  # start and outcomes default where they are not random
    start, outcomes = None, None
    if "start" in latents:
        start = numpyro.sample("start", dist.Categorical(probs=jnp.asarray(mdp.start_probs)))
    with numpyro.plate("time", horizon):
        actions = numpyro.sample(
            "actions",
            dist.Categorical(probs=jnp.full(mdp.n_actions, 1.0 / mdp.n_actions)),
            infer={"pgm_rl": {"mdp": mdp, "horizon": horizon, "beta": beta}},
        )
        if "outcomes" in latents:
            initial = mdp.start_state if start is None else start
            outcomes = numpyro.sample("outcomes", OutcomeIndices(mdp, initial, actions))
    states, rewards = rollout(mdp, actions, start, outcomes)
    numpyro.deterministic("states", states)
    numpyro.deterministic("rewards", rewards)
    numpyro.factor("optimality", beta * jnp.sum(rewards, axis=-1))
    return Trajectory(actions, states, rewards, outcomes)


class OutcomeIndices(dist.Distribution):
    """The outcome indices of a trajectory's steps, given its start and actions (batch (..., T)).

    ``log_prob(k)[..., t] = log outcome_probs[s_t, a_t, k_t]`` with ``s_t`` the state the path
    ``(start, actions, k)`` reaches at step t; ``sample`` draws ``k_0, k_1, ...`` in turn from
    the dynamics (inverse CDF, one uniform per step). Each step's support is ``0..K-1``
    (indices of probability 0, the padding, have log-probability ``-inf``).

    Parameters
    ----------
    mdp : TabularMDP with stochastic dynamics
    start : int array, shape (...)
    actions : int array, shape (..., T)
    """

    arg_constraints: ClassVar[dict] = {}
    has_enumerate_support = True
    pytree_data_fields = ("start", "actions")
    pytree_aux_fields = ("mdp",)

    def __init__(self, mdp, start, actions, *, validate_args=None):
        self.mdp = mdp
        self.actions = jnp.asarray(actions, jnp.int32)
        self.start = jnp.broadcast_to(jnp.asarray(start, jnp.int32), self.actions.shape[:-1])
        super().__init__(batch_shape=self.actions.shape, validate_args=validate_args)

    @property
    def support(self):
        return dist.constraints.integer_interval(0, self.mdp.n_outcomes - 1)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        noise = positive_uniform(key, shape, jnp.asarray(self.mdp.outcome_probs).dtype)
        actions = jnp.broadcast_to(self.actions, shape)
        start = jnp.broadcast_to(self.start, shape[:-1])
        zeros = jnp.zeros(shape, jnp.int32)
        return follow(self.mdp, start, actions, zeros, noise, jnp.ones(shape[-1:], bool))[2]

    def log_prob(self, value):
        value = jnp.asarray(value, jnp.int32)
        shape = jnp.broadcast_shapes(value.shape, self.batch_shape)
        actions = jnp.broadcast_to(self.actions, shape)
        start = jnp.broadcast_to(self.start, shape[:-1])
        return follow(self.mdp, start, actions, jnp.broadcast_to(value, shape))[3]

    def enumerate_support(self, expand=True):
        values = jnp.arange(self.mdp.n_outcomes).reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = jnp.broadcast_to(values, values.shape[:1] + self.batch_shape)
        return values


# The sites trajectory_model makes.
TRAJECTORY_SITES = {
    "time": "plate",
    "actions": "sample",
    "states": "deterministic",
    "rewards": "deterministic",
    "optimality": "sample",
}
# Kernels that sample any model built on trajectory_model, extra latent sites included.
GENERAL_KERNELS = "TrajectoryMH, or NumPyro's DiscreteHMCGibbs or MixedHMC"


class TrajectoryFactor:
    """The extra terms f(trajectory) a model adds to :func:`trajectory_model`.

    The model's target is ``p(trajectory | O) exp(f(trajectory))``: the trajectory posterior
    of ``(mdp, horizon, beta)`` (the Markov part) times ``exp(f)``, with f the sum of the
    log-probabilities of the model's extra observed sites (``numpyro.factor`` sites included,
    each times its ``scale``). f is evaluated by tracing the model with the trajectory's latent
    values substituted: one rollout of the trajectory plus the user's terms, O(T), and
    vectorised with ``jax.vmap`` by the callers.

    Attributes
    ----------
    sites : tuple of str
        The extra observed sites, in the model's order.
    beta : float or scalar array
        The model's inverse temperature (for :meth:`weight`).
    """

    def __init__(self, model, model_args, model_kwargs, latents, sites, beta):
        self._model = model
        self._args = tuple(model_args)
        self._kwargs = dict(model_kwargs)
        self._latents = tuple(latents)
        self.sites = tuple(sites)
        self.beta = beta

    def site_values(self, start, actions, outcomes):
        """``{site: log-factor}`` (scalars) of the trajectory ``(start (), actions (T,),
        outcomes (T,))``; outcomes and start are ignored where they are not latent."""
        data = {"actions": actions, "start": start, "outcomes": outcomes}
        data = {name: data[name] for name in self._latents}
        model_trace = trace(substitute(seed(self._model, 0), data=data)).get_trace(
            *self._args, **self._kwargs
        )
        values = {}
        for name in self.sites:
            site = model_trace[name]
            log_prob = site["fn"].log_prob(site["value"])
            if site["scale"] is not None:
                log_prob = site["scale"] * log_prob
            values[name] = jnp.sum(log_prob)
        return values

    def __call__(self, start, actions, outcomes):
        """f of one trajectory (a scalar): the sum of :meth:`site_values`."""
        return sum(self.site_values(start, actions, outcomes).values())

    def weight(self, beta):
        """The weight of f in the target at inverse temperature ``beta``: ``beta / self.beta``
        (1 where the model's beta is 0). A replica-exchange rung at ``beta`` targets
        ``prior exp(beta (R + f / self.beta))``: the model's whole likelihood
        ``exp(self.beta R + f)`` raised to ``beta / self.beta``, so the hottest rung is close
        to the prior and the target rung is the model."""
        model_beta = jnp.asarray(self.beta)
        return jnp.where(model_beta > 0, beta / jnp.where(model_beta > 0, model_beta, 1.0), 1.0)


class TrajectoryTarget(NamedTuple):
    """What a kernel samples: the Markov part ``(world, horizon, beta)`` and the model's extra
    terms ``factor`` (a :class:`TrajectoryFactor`, or None when the model adds nothing)."""

    world: object
    horizon: int
    beta: object
    factor: TrajectoryFactor | None


def trajectory_target(model, model_args=(), model_kwargs=None, kernel="this kernel"):
    """Read the target of a model built on :func:`trajectory_model`, checked.

    Traces the model once and reads the ``"actions"`` site's metadata (the MDP, the horizon,
    beta). The model may add sites that are functions of the trajectory: observed sites and
    ``numpyro.factor`` sites (they make up f, :class:`TrajectoryFactor`), deterministic sites
    and plates. Refused with a ``ValueError`` naming them: other latent sites (not functions
    of the trajectory; :data:`GENERAL_KERNELS` sample those), and a ``scale`` or
    ``condition`` handler on, or a replacement of, the trajectory model's own sites.

    Parameters
    ----------
    model : callable
    model_args : tuple
    model_kwargs : dict, optional
    kernel : str
        Name of the caller, for the error messages.

    Returns
    -------
    TrajectoryTarget
    """
    model_kwargs = dict(model_kwargs or {})
    model_trace = trace(seed(model, 0)).get_trace(*model_args, **model_kwargs)
    site = model_trace.get("actions")
    info = None if site is None else site["infer"].get("pgm_rl")
    if info is None:
        raise ValueError(
            f"{kernel} needs a model that samples 'actions' through pgm_rl.trajectory_model "
            "(it uses the MDP structure)"
        )
    mdp, horizon, beta = info["mdp"], info["horizon"], info["beta"]
    latents = ("actions", *latent_sites(mdp))
    expected_sites = dict(TRAJECTORY_SITES) | dict.fromkeys(latents, "sample")
    extra = [name for name in model_trace if expected_sites.get(name) != model_trace[name]["type"]]
    other_latents = [
        f"{name!r} ({_site_kind(model_trace[name])})"
        for name in extra
        if name in expected_sites or _site_kind(model_trace[name]) == "latent"
    ]
    if other_latents:
        raise ValueError(
            f"{kernel} samples pgm_rl.trajectory_model's trajectory, with any terms that are "
            f"functions of it, but the model's site(s) {', '.join(other_latents)} are other "
            f"latent variables; use {GENERAL_KERNELS}, which sample every latent site of the "
            f"model, or numpyro.infer.Gibbs([({kernel}(model), {sorted(latents)!r}), "
            "(NUTS(model), None)]), which runs this kernel on the trajectory given the other "
            "sites"
        )
    changed = [
        name
        for name in ("actions", "optimality", "start", "outcomes")
        if name in expected_sites
        if model_trace[name]["scale"] is not None
        or model_trace[name]["is_observed"] != (name == "optimality")
    ]
    optimality = model_trace["optimality"]
    expected = beta * jnp.sum(model_trace["rewards"]["value"])
    if not isinstance(expected, jax.core.Tracer) and not jnp.allclose(
        optimality["fn"].log_prob(optimality["value"]), expected, rtol=1e-6, atol=1e-12
    ):
        changed.append("optimality")
    if changed:
        raise ValueError(
            f"{kernel} samples pgm_rl.trajectory_model's posterior, but the model changes its "
            f"site(s) {', '.join(map(repr, changed))} (scaled, conditioned or replaced); use "
            f"{GENERAL_KERNELS}, which account for every site of the model"
        )
    factor_sites = [name for name in extra if model_trace[name]["type"] == "sample"]
    factor = None
    if factor_sites:
        order = [name for name in TRAJECTORY_LATENTS_ORDER if name in latents]
        factor = TrajectoryFactor(model, model_args, model_kwargs, order, factor_sites, beta)
    return TrajectoryTarget(mdp, horizon, beta, factor)


# The latent sites of trajectory_model, in the model's order.
TRAJECTORY_LATENTS_ORDER = ("start", "actions", "outcomes")


def trajectory_problem(model, model_args=(), model_kwargs=None, kernel="this kernel"):
    """Read ``(mdp, horizon, beta)`` from a model that is :func:`trajectory_model` itself.

    :func:`trajectory_target`, refusing a model that adds terms too (for the samplers whose
    target has no trajectory-level meaning, :class:`~pgm_rl.kernels.StepwiseMH`): a
    ``ValueError`` names the extra sites and the kernels that honour them.

    Returns
    -------
    mdp : TabularMDP
    horizon : int
    beta : float or traced scalar
    """
    target = trajectory_target(model, model_args, model_kwargs, kernel)
    if target.factor is not None:
        raise ValueError(
            f"{kernel} samples only pgm_rl.trajectory_model's own posterior and would ignore the "
            f"model's extra site(s) {', '.join(map(repr, target.factor.sites))}; every other "
            "registry kernel honours them"
        )
    return target.world, target.horizon, target.beta


def _site_kind(site):
    """``"factor"``, ``"observed"``, ``"latent"`` or the trace's own type, for error messages."""
    if site["type"] != "sample":
        return site["type"]
    if site["is_observed"]:
        return "factor" if isinstance(site["fn"], dist.Unit) else "observed"
    return "latent"
