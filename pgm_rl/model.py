"""The control-as-inference trajectory posterior as a NumPyro model.

p(a_0..a_{T-1} | O = 1) ∝ ∏_t (1/A) · exp(beta · r(s_t, a_t))
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import seed, trace

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

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T.
    beta : float
        Inverse temperature, >= 0.

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


# The sites trajectory_model makes; kernels that exploit its structure accept nothing else.
TRAJECTORY_SITES = {
    "time": "plate",
    "actions": "sample",
    "states": "deterministic",
    "rewards": "deterministic",
    "optimality": "sample",
}
# Kernels that sample any model built on trajectory_model, extra sites included.
GENERAL_KERNELS = "TrajectoryMH, or NumPyro's DiscreteHMCGibbs or MixedHMC"


def trajectory_problem(model, model_args=(), model_kwargs=None, kernel="this kernel"):
    """Read ``(mdp, horizon, beta)`` from a model built on :func:`trajectory_model`, checked.

    Traces the model once and reads the ``"actions"`` site's metadata, so kernels that exploit
    the MDP structure work on any model that calls ``trajectory_model``. Those kernels sample
    p(actions) ∝ exp(beta * return) from ``(mdp, horizon, beta)`` alone, so the model must add
    nothing to it: any other site (a ``numpyro.factor``, another latent variable, an
    observation), a ``scale`` or ``condition`` handler, or a changed optimality factor would be
    silently ignored. Those are refused here with a ``ValueError`` naming them and the kernels
    that do handle them.

    Parameters
    ----------
    model : callable
    model_args : tuple
    model_kwargs : dict, optional
    kernel : str
        Name of the kernel asking, for the error message.

    Returns
    -------
    mdp : TabularMDP
    horizon : int
    beta : float or traced scalar
    """
    model_trace = trace(seed(model, 0)).get_trace(*model_args, **(model_kwargs or {}))
    site = model_trace.get("actions")
    info = None if site is None else site["infer"].get("pgm_rl")
    if info is None:
        raise ValueError(
            f"{kernel} needs a model that samples 'actions' through pgm_rl.trajectory_model "
            "(it uses the MDP structure)"
        )
    mdp, horizon, beta = info["mdp"], info["horizon"], info["beta"]
    expected_sites = dict(TRAJECTORY_SITES) | dict.fromkeys(latent_sites(mdp), "sample")
    extra = [
        f"{name!r} ({_site_kind(entry)})"
        for name, entry in model_trace.items()
        if expected_sites.get(name) != entry["type"]
    ]
    if extra:
        raise ValueError(
            f"{kernel} samples only pgm_rl.trajectory_model's own posterior and would ignore the "
            f"model's extra site(s) {', '.join(extra)}; use {GENERAL_KERNELS}, which account "
            "for every site of the model"
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
            f"{kernel} samples only pgm_rl.trajectory_model's own posterior, but the model "
            f"changes its site(s) {', '.join(map(repr, changed))} (scaled, conditioned or "
            f"replaced); use {GENERAL_KERNELS}, which account for every site of the model"
        )
    return mdp, horizon, beta


def _site_kind(site):
    """``"factor"``, ``"observed"``, ``"latent"`` or the trace's own type, for error messages."""
    if site["type"] != "sample":
        return site["type"]
    if site["is_observed"]:
        return "factor" if isinstance(site["fn"], dist.Unit) else "observed"
    return "latent"
