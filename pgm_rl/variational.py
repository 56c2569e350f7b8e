"""Variational policies for the trajectory posterior: NumPyro guides, fitted two ways.

A policy q(a_t | s_t) executed in the true dynamics is a variational family for
:func:`~pgm_rl.model.trajectory_model`. On a stochastic MDP the guide draws the start and the
outcomes from the true dynamics (structured variational inference, Levine 2018 section 3:
q(s' | s, a) = p(s' | s, a)), so its evidence lower bound is

    ELBO(pi) = E_pi[beta * return] - sum_t E_{s_t}[KL(pi_t(. | s_t) || uniform)]  <=  log Z,

the quantity :func:`~pgm_rl.exact.evaluate_policy` computes; its maximum over all (T, S, A)
policies is :func:`~pgm_rl.exact.soft_bellman`'s ``elbo`` (= log Z on deterministic MDPs with
one start state).

:func:`fit_policy` maximises it two ways:

- ``objective="score"``: ``numpyro.infer.SVI`` with ``TraceGraph_ELBO`` on
  ``trajectory_model`` and :func:`policy_guide` (the score-function estimator, i.e. REINFORCE:
  maximum-entropy policy gradient). Works for any model a user writes on top of the guide.
- ``objective="exact"``: the ELBO by a differentiable forward pass (zero-variance gradients),
  optimised with optax. By default the step is the NATURAL gradient (Kakade 2002): the
  gradient preconditioned by the Fisher information of the trajectory distribution. For a
  tabular softmax policy that Fisher is block diagonal, ``mu_t(s) (diag pi - pi pi^T)`` per
  (t, s), so the natural gradient of the time-indexed logits is the soft advantage
  ``Q^pi_t(s, a) - log pi_t(a | s) - log A - V^pi_t(s)`` of the policy itself (one backward
  soft policy evaluation), and a plain SGD step of size ``eta`` on it is mirror descent on the
  simplex: ``logits <- (1 - eta) logits + eta Q^pi`` (eta = 1 is soft policy iteration, exact
  in T steps). This is what makes the saturated softmax of the notebook grid trainable: the
  Euclidean gradient ``mu_t(s) pi (A^pi)`` vanishes where pi saturates or mu_t(s) is tiny, and
  plain Adam on the logits stalls there (0.43 nats at T = 20, beta = 0.05), whereas the natural
  gradient does not see the ``mu pi`` factor at all. For ``"stationary"`` logits the natural
  gradient is the occupancy-weighted mean advantage over t; for ``"features"`` it is the
  compatible-function-approximation least squares fit of the advantage (the (F A) x (F A)
  Fisher, singular by construction, solved by its pseudo-inverse: the minimum-norm fit, zero
  for zero features, sound in float32). ``natural_gradient=False`` gives the Euclidean
  gradient by ``jax.grad`` instead (with Adam by default).

A fit whose exact ELBO ends below its start (the uniform policy) or far below the best it
reached warns (``RuntimeWarning``, naming the optimizer): its step size is too large or of the
wrong sign, though no NaN appeared.
"""

import warnings
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax import lax, random
from numpyro.infer.elbo import ELBO

from pgm_rl._checks import (
    check_actions,
    check_beta,
    check_fit_memory,
    check_horizon,
    check_key,
    check_positive_int,
    check_trajectories,
)
from pgm_rl._sampling import positive_uniform
from pgm_rl.model import OutcomeIndices, check_env

__all__ = [
    "PARAMETRIZATIONS",
    "FittedPolicy",
    "PolicyGradientELBO",
    "PolicyGuide",
    "fit_policy",
    "fit_policy_to_samples",
    "policy_guide",
]

PARAMETRIZATIONS = ("time-indexed", "stationary", "features")
OBJECTIVES = ("exact", "score")
PARAM_NAME = "policy_logits"


# ----------------------------------------------------------------------------- the guide


def _check_parametrization(parametrization):
    if not isinstance(parametrization, str) or parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {', '.join(map(repr, PARAMETRIZATIONS))}, got "
            f"{parametrization!r}"
        )
    return parametrization


def _check_features(features, parametrization, n_states):
    if parametrization != "features":
        if features is not None:
            raise ValueError(
                f"features are only used with parametrization='features', not {parametrization!r}"
            )
        return None
    if features is None:
        raise ValueError("parametrization='features' needs features, an (S, F) array")
    if isinstance(features, jax.core.Tracer):
        raise TypeError("features must be a concrete (S, F) array")
    array = np.asarray(features)
    if array.dtype.kind not in "iuf" or array.dtype == bool:
        raise TypeError(f"features must be a real (S, F) array, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] != n_states or array.shape[1] < 1:
        raise ValueError(
            f"features must have shape (S, F) = ({n_states}, F) with F >= 1, got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("features must be finite (no NaN or inf)")
    return jnp.asarray(array, jnp.asarray(0.0).dtype)


class PolicyGuide:
    """A learnable policy as a NumPyro guide for ``trajectory_model(env, horizon, beta)``.

    Built by :func:`policy_guide`. Calling it with the model's arguments draws the start (on a
    random start, from ``start_probs``), then actions a_t ~ q(. | s_t) and, on stochastic
    dynamics, outcome indices from the true dynamics, step by step; it records the sites
    ``"start"``, ``"actions"`` and ``"outcomes"`` with the shapes the model gives them, and the
    learnable ``numpyro.param`` ``"policy_logits"`` (:attr:`param_shape`).

    Attributes
    ----------
    env : TabularMDP
    horizon : int
    parametrization : str
    features : array (S, F) or None
    param_shape : tuple
        (T, S, A), (S, A) or (F, A).
    """

    def __init__(self, env, horizon, parametrization, features):
        self.env = env
        self.horizon = horizon
        self.parametrization = parametrization
        self.features = features
        n_states, n_actions = env.n_states, env.n_actions
        self.param_shape = {
            "time-indexed": (horizon, n_states, n_actions),
            "stationary": (n_states, n_actions),
            "features": (None if features is None else features.shape[1], n_actions),
        }[parametrization]

    def __repr__(self):
        return (
            f"PolicyGuide(parametrization={self.parametrization!r}, horizon={self.horizon}, "
            f"param_shape={self.param_shape})"
        )

    def init_params(self):
        """Zero logits: the uniform policy (the prior)."""
        return jnp.zeros(self.param_shape, jnp.asarray(0.0).dtype)

    def log_policy(self, params):
        """Normalised log pi_t(a | s), shape (T, S, A), from the logits ``params``."""
        return _log_policy(params, self.parametrization, self.features, self.horizon)

    def __call__(self, env, horizon, beta):
        del beta
        mdp = check_env(env)
        if horizon != self.horizon or mdp.n_states != self.env.n_states:
            raise ValueError(
                f"this guide was built for horizon {self.horizon} and {self.env.n_states} "
                f"states, got horizon {horizon} and {mdp.n_states} states"
            )
        logits = numpyro.param(PARAM_NAME, self.init_params())
        log_pi = self.log_policy(logits)
        key = numpyro.prng_key()
        if key is None:  # not under a seed handler (e.g. tracing for shapes)
            key = random.key(0)
        path_key = random.split(key)[1]
        start = None
        if mdp.has_random_start:
            start = numpyro.sample("start", dist.Categorical(probs=jnp.asarray(mdp.start_probs)))
        s0 = jnp.asarray(mdp.start_state if start is None else start, jnp.int32)
        actions, outcomes = _draw_path(path_key, mdp, log_pi, s0)
        with numpyro.plate("time", horizon):
            numpyro.sample("actions", _PolicyActions(mdp, log_pi, s0, outcomes, actions))
            if mdp.has_random_dynamics:
                numpyro.sample("outcomes", _Given(OutcomeIndices(mdp, s0, actions), outcomes))


def policy_guide(env, horizon, parametrization="time-indexed", features=None):
    """A NumPyro guide for :func:`~pgm_rl.model.trajectory_model` (call it with the same arguments).

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        T.
    parametrization : {"time-indexed", "stationary", "features"}
        ``"time-indexed"``: (T, S, A) logits; ``"stationary"``: (S, A) logits shared by all
        steps; ``"features"``: logits = ``features @ W`` with W (F, A), shared by all steps.
    features : array_like (S, F), only for ``"features"``

    Returns
    -------
    PolicyGuide
        Works with ``numpyro.infer.SVI`` and NumPyro's ELBO classes (the sites are discrete:
        use a score-function ELBO, ``TraceGraph_ELBO``), and with ``Predictive(model,
        guide=guide, params=...)`` for trajectories.
    """
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    parametrization = _check_parametrization(parametrization)
    features = _check_features(features, parametrization, mdp.n_states)
    return PolicyGuide(mdp, horizon, parametrization, features)


def _log_policy(params, parametrization, features, horizon):
    if parametrization == "time-indexed":
        logits = params
    elif parametrization == "stationary":
        logits = jnp.broadcast_to(params, (horizon, *params.shape))
    else:
        logits = jnp.broadcast_to(features @ params, (horizon, features.shape[0], params.shape[1]))
    return jax.nn.log_softmax(logits, axis=-1)


def _draw_path(key, mdp, log_pi, s0):
    """Actions (T,) from the policy and outcome indices (T,) from the true dynamics, in turn."""
    horizon = log_pi.shape[0]
    keys = random.split(key, horizon)
    if mdp.has_random_dynamics:
        out_states = jnp.asarray(mdp.outcome_states)
        out_probs = jnp.asarray(mdp.outcome_probs)
    else:
        next_state = jnp.asarray(mdp.next_state)

    def step(state, inputs):
        step_key, log_pi_t = inputs
        action_key, outcome_key = random.split(step_key)
        action = random.categorical(action_key, log_pi_t[state]).astype(jnp.int32)
        if mdp.has_random_dynamics:
            probs = out_probs[state, action]
            cdf = jnp.cumsum(probs)
            u = positive_uniform(outcome_key, (), cdf.dtype)
            k = jnp.sum(cdf[:-1] < u * cdf[-1]).astype(jnp.int32)
            new_state = out_states[state, action, k]
        else:
            k = jnp.zeros((), jnp.int32)
            new_state = next_state[state, action]
        return new_state, (action, k)

    _, (actions, outcomes) = lax.scan(step, s0, (keys, log_pi))
    return actions, outcomes


def _path_states(mdp, s0, actions, outcomes):
    if mdp.has_random_dynamics:
        out_states = jnp.asarray(mdp.outcome_states)

        def step(state, inputs):
            action, k = inputs
            new_state = out_states[state, action, k]
            return new_state, state

    else:
        next_state = jnp.asarray(mdp.next_state)

        def step(state, inputs):
            action, _ = inputs
            return next_state[state, action], state

    return lax.scan(step, s0, (actions, outcomes))[1]  # (T,): s_0 .. s_{T-1}


class _PolicyActions(dist.Distribution):
    """The guide's actions site: log_prob(a)[t] = log pi_t(a_t | s_t) along the path of
    (start, a, the outcomes drawn with them); ``sample`` returns the actions the guide drew
    jointly with the outcomes (a draw of q itself, made with the guide's own key)."""

    arg_constraints: ClassVar[dict] = {}
    pytree_data_fields = ("log_pi", "start", "outcomes", "drawn")
    pytree_aux_fields = ("mdp",)
    # discrete: NumPyro must use the score function (its default, all-params-reparametrized
    # rule would say True for a distribution with no declared arguments)
    has_rsample = False

    def __init__(self, mdp, log_pi, start, outcomes, drawn):
        self.mdp, self.log_pi, self.start = mdp, log_pi, start
        self.outcomes, self.drawn = outcomes, drawn
        super().__init__(batch_shape=drawn.shape)

    @property
    def support(self):
        return dist.constraints.integer_interval(0, self.mdp.n_actions - 1)

    def sample(self, key, sample_shape=()):
        return jnp.broadcast_to(self.drawn, tuple(sample_shape) + self.drawn.shape)

    def step_log_prob(self, value):
        """log pi_t(a_t | s_t) of each step, shape (T,)."""
        value = jnp.asarray(value, jnp.int32)
        states = _path_states(self.mdp, self.start, value, self.outcomes)
        time = jnp.arange(value.shape[-1])
        return self.log_pi[time, states, value]

    def log_prob(self, value):
        per_step = self.step_log_prob(value)
        # The whole path's log q in element 0 (zeros elsewhere): the sum is log q(actions |
        # outcomes), and TraceGraph_ELBO, which treats the elements of plate("time") as
        # independent and pairs element t's score only with element t's costs, then pairs the
        # score of the whole path with every cost (a_t moves every later state, so the steps
        # are not independent; per-step elements would drop the later entropy terms).
        total = jnp.sum(per_step, axis=-1, keepdims=True)
        return jnp.concatenate([total, jnp.zeros_like(per_step[..., 1:])], axis=-1)


class _Given(dist.Distribution):
    """``base``'s log_prob, sampling the value already drawn (the outcomes, drawn with the
    actions)."""

    arg_constraints: ClassVar[dict] = {}
    pytree_data_fields = ("base", "drawn")
    has_rsample = False

    def __init__(self, base, drawn):
        self.base, self.drawn = base, drawn
        super().__init__(batch_shape=base.batch_shape)

    @property
    def support(self):
        return self.base.support

    def sample(self, key, sample_shape=()):
        return jnp.broadcast_to(self.drawn, tuple(sample_shape) + self.drawn.shape)

    def log_prob(self, value):
        return self.base.log_prob(value)


# ----------------------------------------------------------------------------- score ELBO


class PolicyGradientELBO(ELBO):
    """Score-function ELBO for :func:`policy_guide` with the two classic variance reductions.

    REINFORCE for the maximum-entropy objective, as a NumPyro ``ELBO`` (use it with
    ``numpyro.infer.SVI``): ``num_particles`` trajectories per step; the score of step t,
    ``grad log q_t(a_t | s_t)``, is paired only with the costs from step t on (reward to go,
    ``beta r_t' - log q_t' - log A``: earlier costs do not depend on a_t), minus a leave-one-out
    baseline (the mean reward to go of step t over the OTHER particles: independent of this
    particle, so unbiased). The loss value is the usual ELBO estimate. For the model
    ``trajectory_model`` and guide :func:`policy_guide` only (it reads the per-step rewards and
    ``beta`` from the model's trace); for models with more sites use ``TraceGraph_ELBO``.
    """

    can_infer_discrete = True

    def __init__(self, num_particles=64):
        if check_positive_int(num_particles, "num_particles") < 2:
            raise ValueError("num_particles must be >= 2 (the baseline leaves one out)")
        super().__init__(num_particles=num_particles)

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        from numpyro.handlers import seed
        from numpyro.infer.util import get_importance_trace

        def one(key):
            model_key, guide_key = random.split(key)
            model_trace, guide_trace = get_importance_trace(
                seed(model, model_key), seed(guide, guide_key), args, kwargs, param_map
            )
            elbo = 0.0
            for site in model_trace.values():
                if site["type"] == "sample":
                    elbo = elbo + jnp.sum(site["log_prob"])
            for site in guide_trace.values():
                if site["type"] == "sample":
                    elbo = elbo - jnp.sum(site["log_prob"])
            site = guide_trace["actions"]
            if not isinstance(site["fn"], _PolicyActions):
                raise ValueError("PolicyGradientELBO needs the guide of pgm_rl.policy_guide")
            step_log_q = site["fn"].step_log_prob(site["value"])
            costs = (
                beta * model_trace["rewards"]["value"]
                + model_trace["actions"]["log_prob"]
                - lax.stop_gradient(step_log_q)
            )
            to_go = jnp.cumsum(costs[::-1])[::-1]
            return lax.stop_gradient(elbo), step_log_q, lax.stop_gradient(to_go)

        beta = kwargs["beta"] if "beta" in kwargs else args[2]  # trajectory_model's arguments
        keys = random.split(rng_key, self.num_particles)
        elbo, step_log_q, to_go = jax.vmap(one)(keys)
        n = self.num_particles
        baseline = (jnp.sum(to_go, axis=0, keepdims=True) - to_go) / (n - 1)
        surrogate = jnp.mean(jnp.sum(step_log_q * (to_go - baseline), axis=-1))
        return -(jnp.mean(elbo) + surrogate - lax.stop_gradient(surrogate))


# ----------------------------------------------------------------------------- exact ELBO


def _dynamics(mdp):
    """(ns, probs, rewards) (S, A, K) and mu0 (S,) as JAX arrays in the working dtype."""
    dtype = jnp.asarray(0.0).dtype
    return (
        jnp.asarray(mdp.outcome_states, jnp.int32),
        jnp.asarray(mdp.outcome_probs, dtype),
        jnp.asarray(mdp.outcome_rewards, dtype),
        jnp.asarray(mdp.start_probs, dtype),
    )


def policy_elbo(log_pi, ns, probs, rewards, mu0, beta):
    """The ELBO of a (T, S, A) log-policy in the true dynamics, differentiable (= evaluate_policy).

    Also returns the state marginals (T, S) of steps 0..T-1.
    """
    n_actions = log_pi.shape[-1]
    mean_reward = jnp.sum(probs * rewards, axis=-1)  # (S, A)
    log_a = jnp.log(n_actions)

    def step(mu, log_pi_t):
        pi = jnp.exp(log_pi_t)
        joint = mu[:, None] * pi
        gain = jnp.sum(joint * (beta * mean_reward - log_pi_t - log_a))
        mu_next = jnp.zeros_like(mu).at[ns].add(joint[..., None] * probs)
        return mu_next, (gain, mu)

    _, (gains, mus) = lax.scan(step, mu0, log_pi)
    return jnp.sum(gains), mus


def policy_values(log_pi, ns, probs, rewards, beta):
    """Soft policy evaluation: Q^pi (T, S, A) and V^pi (T, S) of the policy itself."""
    n_actions = log_pi.shape[-1]
    mean_reward = jnp.sum(probs * rewards, axis=-1)
    log_a = jnp.log(n_actions)

    def step(v_next, log_pi_t):
        q = beta * mean_reward + jnp.sum(probs * v_next[ns], axis=-1)
        v = jnp.sum(jnp.exp(log_pi_t) * (q - log_pi_t - log_a), axis=-1)
        return v, (q, v)

    zeros = jnp.zeros(ns.shape[0], probs.dtype)
    _, (q, v) = lax.scan(step, zeros, log_pi, reverse=True)
    return q, v


def _natural_gradient(params, parametrization, features, horizon, dyn, beta):
    """Minus the natural gradient of the ELBO (the direction optax minimises along), and ELBO."""
    ns, probs, rewards, mu0 = dyn
    log_pi = _log_policy(params, parametrization, features, horizon)
    elbo, mus = policy_elbo(log_pi, ns, probs, rewards, mu0, beta)
    q, v = policy_values(log_pi, ns, probs, rewards, beta)
    advantage = q - log_pi - jnp.log(log_pi.shape[-1]) - v[..., None]  # (T, S, A)
    if parametrization == "time-indexed":
        direction = advantage
    elif parametrization == "stationary":
        mass = jnp.sum(mus, axis=0)  # (S,)
        weighted = (
            jnp.sum(mus[..., None] * advantage, axis=0) / jnp.where(mass > 0, mass, 1.0)[:, None]
        )
        direction = jnp.where((mass > 0)[:, None], weighted, jnp.mean(advantage, axis=0))
    else:
        pi = jnp.exp(log_pi)
        n_feat, n_actions = params.shape
        # Fisher of the trajectory distribution in W (F, A): sum_{t,s} mu phi phi^T (x) Cov(pi)
        w = jnp.sum(mus[..., None] * pi, axis=0)  # (S, A): sum_t mu_t(s) pi_t(a|s)
        diag = jnp.einsum("sa,sf,sg->fag", w, features, features)
        outer = jnp.einsum("ts,tsa,tsb,sf,sg->fagb", mus, pi, pi, features, features)
        fisher = jnp.einsum("fag,ab->fagb", diag, jnp.eye(n_actions)) - outer
        fisher = fisher.reshape(n_feat * n_actions, n_feat * n_actions)
        grad = jnp.einsum("ts,tsa,sf->fa", mus, pi * advantage, features).reshape(-1)
        # The Fisher is singular by construction (adding one vector to every action's column
        # of W leaves the policy unchanged; features that are zero or only on unvisited states
        # add more null directions): the natural gradient is its minimum-norm least-squares
        # solution, the pseudo-inverse with eigenvalues below 10 (F A) eps of the largest
        # dropped (rounding noise of the working dtype; all of them for a zero Fisher, which
        # gives the zero step). grad lies in the Fisher's range, so nothing else is lost.
        direction = (jnp.linalg.pinv(fisher, hermitian=True) @ grad).reshape(n_feat, n_actions)
    return -direction, elbo


def _euclidean_gradient(params, parametrization, features, horizon, dyn, beta):
    ns, probs, rewards, mu0 = dyn

    def loss(p):
        log_pi = _log_policy(p, parametrization, features, horizon)
        return -policy_elbo(log_pi, ns, probs, rewards, mu0, beta)[0]

    value, grad = jax.value_and_grad(loss)(params)
    return grad, -value


# ----------------------------------------------------------------------------- fitting


@dataclass(frozen=True, eq=False)
class FittedPolicy:
    """A fitted variational policy.

    Attributes
    ----------
    log_policy : array, shape (T, S, A)
        log q_t(a | s).
    elbo : float
        Its ELBO, evaluated exactly (``evaluate_policy(env, policy, beta).elbo``).
    elbo_trace : array, shape (num_steps,)
        The ELBO at each step (exact for ``"exact"``; NumPyro's one-sample estimate for
        ``"score"``).
    kl_to_posterior : float or None
        ``log Z - elbo`` = KL(q || exact posterior) with log Z from :func:`~pgm_rl.exact.solve`
        (None where ``solve`` does not apply). On stochastic MDPs this includes the gap that no
        policy can close (the posterior bends the dynamics): compare ``elbo`` with
        ``soft_bellman(...).elbo`` instead.
    svi_state : the final optax state (``"exact"``) or ``numpyro.infer.svi.SVIState``
    params : the final logits
    guide : PolicyGuide
    objective : str
    beta : float
    """

    log_policy: jax.Array
    elbo: float
    elbo_trace: jax.Array
    kl_to_posterior: float | None
    svi_state: object
    params: jax.Array
    guide: PolicyGuide
    objective: str
    beta: float

    @property
    def policy(self):
        """q_t(a | s), shape (T, S, A)."""
        return jnp.exp(self.log_policy)

    def __repr__(self):
        kl = "None" if self.kl_to_posterior is None else f"{self.kl_to_posterior:.4g}"
        return (
            f"FittedPolicy(objective={self.objective!r}, parametrization="
            f"{self.guide.parametrization!r}, steps={len(self.elbo_trace)}, "
            f"elbo={self.elbo:.10g}, kl_to_posterior={kl})"
        )


def fit_policy(
    env,
    horizon,
    beta,
    *,
    parametrization="time-indexed",
    objective="exact",
    num_steps=500,
    optimizer=None,
    key=None,
    features=None,
    natural_gradient=True,
    num_particles=64,
    estimator="rloo",
    progress_bar=False,
):
    """Fit a variational policy to the trajectory posterior (maximise its ELBO).

    Parameters
    ----------
    env : TabularMDP
    horizon : int
    beta : float
    parametrization : {"time-indexed", "stationary", "features"}
    objective : {"exact", "score"}
        ``"exact"``: the analytic ELBO (a differentiable forward pass), optax steps on its
        natural gradient (see the module docstring) or, with ``natural_gradient=False``, on its
        ``jax.grad``. ``"score"``: ``numpyro.infer.SVI`` with ``TraceGraph_ELBO``
        (REINFORCE) on ``trajectory_model`` and :func:`policy_guide`.
    num_steps : int >= 1
    optimizer : optax.GradientTransformation, optional
        Default: ``optax.sgd(1.0)`` on the natural gradient (soft policy iteration; 0.5 for
        ``"stationary"`` and ``"features"``), ``optax.adam(0.1)`` on the Euclidean gradient,
        ``optax.adam(0.05)`` for ``"score"``. (For ``"score"`` an optax transformation is
        wrapped with ``numpyro.optim.optax_to_numpyro``; a ``numpyro.optim`` optimizer is used
        as is.)
    key : jax PRNG key (required for ``"score"``; unused by ``"exact"``)
    features : array (S, F), for ``parametrization="features"``
    natural_gradient : bool, default True (``"exact"`` only)
    num_particles : int, default 64 (``"score"`` only): trajectories per gradient estimate
    estimator : {"rloo", "tracegraph"} (``"score"`` only)
        ``"rloo"``: :class:`PolicyGradientELBO` (reward to go and a leave-one-out baseline);
        ``"tracegraph"``: NumPyro's ``TraceGraph_ELBO`` (unbiased, far noisier here).
    progress_bar : bool, default False (``"score"`` only): NumPyro's SVI progress bar

    Returns
    -------
    FittedPolicy

    Raises
    ------
    ValueError, TypeError
        For an unknown parametrization or objective, ``num_steps`` not a positive int, features
        of the wrong shape; ``FloatingPointError`` when the ELBO becomes NaN (naming the step
        and the last finite ELBO).

    Warns
    -----
    RuntimeWarning
        When the fitted policy's exact ELBO ends below the start (the uniform policy) or far
        below the best the fit reached (more than a tenth of its gain or 1 nat; for
        ``"score"`` beyond the noise of its estimates), naming the optimizer: its step size is
        too large or of the wrong sign.
    """
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = float(check_beta(beta))
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise ValueError(
            f"objective must be one of {', '.join(map(repr, OBJECTIVES))}, got {objective!r}"
        )
    num_steps = check_positive_int(num_steps, "num_steps")
    check_fit_memory(mdp, horizon, num_steps, objective, num_particles)  # before allocating
    guide = policy_guide(mdp, horizon, parametrization, features)
    if objective == "exact":
        trace, params, state = _fit_exact(guide, beta, num_steps, optimizer, natural_gradient)
    else:
        if key is None:
            raise ValueError("objective='score' needs key, a jax PRNG key")
        check_key(key)
        num_particles = check_positive_int(num_particles, "num_particles")
        if estimator not in ("rloo", "tracegraph"):
            raise ValueError(f"estimator must be 'rloo' or 'tracegraph', got {estimator!r}")
        trace, params, state = _fit_score(
            guide, beta, num_steps, optimizer, key, num_particles, estimator, bool(progress_bar)
        )
    _check_trace(trace, objective)
    if not np.isfinite(np.asarray(params)).all():
        raise FloatingPointError("the fitted policy logits are not finite (the fit diverged)")
    fitted = _finish(guide, params, trace, state, objective, beta)
    if optimizer is None:
        name = "the default " + _default_optimizer(objective, parametrization, natural_gradient)[1]
    else:
        name = "the optimizer passed (optimizer=...)"
    _warn_if_diverged(fitted, name)
    return fitted


def _check_trace(trace, objective):
    trace = np.asarray(trace)
    bad = ~np.isfinite(trace)
    if bad.any():
        step = int(np.argmax(bad))
        finite = trace[:step][np.isfinite(trace[:step])]
        last = f"{finite[-1]:.10g}" if finite.size else "none"
        raise FloatingPointError(
            f"fit_policy ({objective!r}) diverged: the ELBO is {trace[step]} at step {step} "
            f"(last finite ELBO: {last}); try a smaller step size (optimizer=...)"
        )


def _warn_if_diverged(fitted, optimizer_name):
    """``RuntimeWarning`` when a fit ends below its start or far below the best ELBO it saw.

    The start is the ELBO of the uniform policy (the initial logits), exact; the end is
    ``fitted.elbo``, exact. "Far below the best" means more than a tenth of the gain over the
    start or more than 1 nat (an unstable optimizer) and more than the rounding of the working
    dtype. For ``"score"``, whose trace is a noisy estimate, the best is that of the trace's
    moving mean (window n / 10, at most 50), and both comparisons allow 4 standard errors of
    that mean (the noise of the estimate also jitters the final policy).
    """
    from pgm_rl.exact import evaluate_policy

    trace = np.asarray(fitted.elbo_trace, np.float64)
    guide, final = fitted.guide, fitted.elbo
    if fitted.objective == "exact":
        start, best, noise = trace[0], max(trace.max(), final), 0.0
    else:
        uniform = np.full((guide.horizon, guide.env.n_states, guide.env.n_actions), 1.0)
        start = float(evaluate_policy(guide.env, uniform / guide.env.n_actions, fitted.beta).elbo)
        window = max(1, min(50, trace.size // 10))
        best = np.convolve(trace, np.ones(window) / window, mode="valid").max()
        spread = np.std(np.diff(trace)) / np.sqrt(2.0) if trace.size > 1 else 0.0
        noise = 4.0 * spread / np.sqrt(window)
    eps = float(np.finfo(np.asarray(fitted.params).dtype).eps)
    tol = np.sqrt(eps) * max(1.0, abs(start), abs(best))
    if final < start - tol - noise:
        what = f"below its start {start:.6g} (the uniform policy)"
    elif best - final > max(min(0.1 * (best - start), 1.0), noise) + tol:
        what = f"far below the best it reached, {best:.6g} (start {start:.6g})"
    else:
        return
    warnings.warn(
        f"fit_policy ({fitted.objective!r}) diverged: its ELBO ended at {final:.6g}, {what}; "
        f"the step size of {optimizer_name} is too large (or of the wrong sign): try a smaller "
        "one (optimizer=...)",
        RuntimeWarning,
        stacklevel=3,
    )


def _default_optimizer(objective, parametrization, natural_gradient):
    """The default optax optimizer of a fit and its name."""
    if objective == "score":
        return optax.adam(0.05), "optax.adam(0.05)"
    if natural_gradient:
        rate = 1.0 if parametrization == "time-indexed" else 0.5
        return optax.sgd(rate), f"optax.sgd({rate})"
    return optax.adam(0.1), "optax.adam(0.1)"


def _finish(guide, params, trace, state, objective, beta):
    from pgm_rl.exact import evaluate_policy, solve

    log_pi = guide.log_policy(params)
    elbo = float(evaluate_policy(guide.env, np.exp(np.asarray(log_pi, np.float64)), beta).elbo)
    try:
        log_z = float(solve(guide.env, guide.horizon, beta).log_z)
    except (ValueError, MemoryError):
        log_z = None
    return FittedPolicy(
        log_policy=log_pi,
        elbo=elbo,
        elbo_trace=jnp.asarray(trace),
        kl_to_posterior=None if log_z is None else log_z - elbo,
        svi_state=state,
        params=params,
        guide=guide,
        objective=objective,
        beta=beta,
    )


def _fit_exact(guide, beta, num_steps, optimizer, natural_gradient):
    run, params, state = exact_runner(guide, beta, num_steps, optimizer, natural_gradient)
    (params, state), trace = run(params, state)
    return trace, params, state


def exact_runner(guide, beta, num_steps, optimizer=None, natural_gradient=True):
    """The jitted ``run(params, opt_state) -> ((params, opt_state), elbo_trace)`` of the
    ``"exact"`` objective, with the initial params and optimizer state (for benchmarks: call it
    twice to time it without compilation)."""
    if not isinstance(natural_gradient, bool):
        raise TypeError(f"natural_gradient must be a bool, got {natural_gradient!r}")
    if optimizer is None:
        optimizer = _default_optimizer("exact", guide.parametrization, natural_gradient)[0]
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    dyn = _dynamics(guide.env)
    direction = _natural_gradient if natural_gradient else _euclidean_gradient
    parametrization, features, horizon = guide.parametrization, guide.features, guide.horizon

    @jax.jit
    def run(params, opt_state):
        def step(carry, _):
            params, opt_state = carry
            grad, elbo = direction(params, parametrization, features, horizon, dyn, beta)
            updates, opt_state = optimizer.update(grad, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), elbo

        return lax.scan(step, (params, opt_state), None, length=num_steps)

    params = guide.init_params()
    return run, params, optimizer.init(params)


def _fit_score(guide, beta, num_steps, optimizer, key, num_particles, estimator, progress_bar):
    from numpyro.infer import SVI, TraceGraph_ELBO

    from pgm_rl.model import trajectory_model

    if optimizer is None:
        optimizer = _default_optimizer("score", guide.parametrization, True)[0]
    if isinstance(optimizer, optax.GradientTransformation):
        optimizer = numpyro.optim.optax_to_numpyro(optimizer)
    if not isinstance(optimizer, numpyro.optim._NumPyroOptim):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation or a numpyro.optim optimizer, "
            f"got {type(optimizer).__name__}"
        )
    if estimator == "tracegraph":
        elbo = TraceGraph_ELBO(num_particles=num_particles)
    else:
        elbo = PolicyGradientELBO(num_particles=num_particles)
    svi = SVI(trajectory_model, guide, optimizer, elbo)
    result = svi.run(key, num_steps, guide.env, guide.horizon, beta, progress_bar=progress_bar)
    return -result.losses, result.params[PARAM_NAME], result.state


# ----------------------------------------------------------------------------- forward KL


def fit_policy_to_samples(
    env,
    samples,
    parametrization="time-indexed",
    prior_counts=1.0,
    *,
    features=None,
    beta=None,
    num_steps=500,
):
    """The maximum-likelihood policy of sampled trajectories: the forward-KL (mass-covering) fit.

    ``KL(p || q)`` with p the distribution the samples come from (any kernel's draws, or
    ``solve(...).sample``): for the tabular parametrizations the Dirichlet-smoothed counts,
    ``q_t(a | s) = (n_t(s, a) + prior_counts) / (n_t(s) + A prior_counts)`` (summed over t for
    ``"stationary"``); for ``"features"``, softmax regression of the actions on
    ``features[s]`` (Adam, ``num_steps`` steps on the mean log-likelihood, with a Gaussian
    penalty ``prior_counts / 2 |W|^2 / n``). SVI's :func:`fit_policy` is the reverse-KL
    (mode-seeking) fit.

    Parameters
    ----------
    env : TabularMDP
    samples : dict with ``"actions"`` (..., T) and ``"states"`` (..., T + 1)
        ``"states"`` may be omitted on deterministic MDPs (rolled out from the actions).
    parametrization : {"time-indexed", "stationary", "features"}
    prior_counts : float > 0
    features : array (S, F), for ``"features"``
    beta : float, optional
        When given, ``elbo`` and ``kl_to_posterior`` are evaluated at this beta (else NaN/None).

    num_steps : int >= 1, for ``"features"``

    Returns
    -------
    FittedPolicy (``objective="samples"``; ``elbo_trace`` holds the per-step mean
    log-likelihood for ``"features"``, is empty for the tabular ones)

    Raises
    ------
    ValueError, TypeError
        For bad arguments, and for samples that are not trajectories of ``env`` (non-integer
        arrays, no trajectory, shapes, ranges, a start or a move ``env`` does not allow: the
        check :func:`~pgm_rl.irl.reward_model` applies to demonstrations), before any work.
    """
    from pgm_rl.dynamics import rollout

    mdp = check_env(env)
    parametrization = _check_parametrization(parametrization)
    features = _check_features(features, parametrization, mdp.n_states)
    if isinstance(prior_counts, bool) or not isinstance(prior_counts, (int, float)):
        raise TypeError(f"prior_counts must be a positive number, got {prior_counts!r}")
    if not (prior_counts > 0 and np.isfinite(prior_counts)):
        raise ValueError(f"prior_counts must be a positive number, got {prior_counts!r}")
    num_steps = check_positive_int(num_steps, "num_steps")
    beta = None if beta is None else float(check_beta(beta))
    if not isinstance(samples, dict) or "actions" not in samples:
        raise TypeError(
            "samples must be a dict with 'actions' (..., T) (and 'states' (..., T + 1))"
        )
    actions = samples["actions"]
    if "states" in samples:
        states = samples["states"]
    elif mdp.is_deterministic:
        actions = check_actions(actions, mdp.n_actions, "samples", "sample")
        states = np.asarray(rollout(mdp, actions)[0])
    else:
        raise ValueError("samples must hold 'states' (..., T + 1) on a stochastic MDP")
    actions, states = check_trajectories(mdp, actions, states, "samples", "sample")
    horizon = actions.shape[-1]
    n_states, n_actions = mdp.n_states, mdp.n_actions
    counts = np.zeros((horizon, n_states, n_actions))
    time = np.broadcast_to(np.arange(horizon), actions.shape)
    np.add.at(counts, (time, states[:, :-1], actions), 1.0)
    guide = PolicyGuide(mdp, horizon, parametrization, features)
    trace = jnp.zeros(0)
    if parametrization == "time-indexed":
        params = jnp.log(counts + prior_counts)
    elif parametrization == "stationary":
        params = jnp.log(counts.sum(axis=0) + prior_counts)
    else:
        per_state = jnp.asarray(counts.sum(axis=0))  # (S, A)
        total = float(per_state.sum())
        optimizer = optax.adam(0.1)

        def loss(w):
            log_q = jax.nn.log_softmax(features @ w, axis=-1)
            return -jnp.sum(per_state * log_q) / total + 0.5 * prior_counts * jnp.sum(w**2) / total

        @jax.jit
        def run(w, state):
            def step(carry, _):
                w, state = carry
                value, grad = jax.value_and_grad(loss)(w)
                updates, state = optimizer.update(grad, state, w)
                return (optax.apply_updates(w, updates), state), -value

            return lax.scan(step, (w, state), None, length=num_steps)

        w0 = guide.init_params()
        (params, _), trace = run(w0, optimizer.init(w0))
    if beta is None:
        log_pi = guide.log_policy(params)
        return FittedPolicy(log_pi, float("nan"), trace, None, None, params, guide, "samples", None)
    return _finish(guide, params, trace, None, "samples", beta)
