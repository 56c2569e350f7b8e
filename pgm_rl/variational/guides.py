"""The variational family: a policy run in the true dynamics, as a NumPyro guide for
:func:`~pgm_rl.model.trajectory_model` (:func:`policy_guide`, :class:`PolicyGuide`).

The guide draws the start from ``start_probs``, then, step by step, an action from the policy and
an outcome index from ``outcome_probs`` (S, A, K) with :func:`pgm_rl.dynamics.follow`: one path
for every world (a deterministic one is K = 1 with a one-hot start, its draws then certain).
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax, random

from pgm_rl._checks import check_horizon
from pgm_rl._sampling import positive_uniform
from pgm_rl.dynamics import draw_start, follow
from pgm_rl.model import OutcomeIndices
from pgm_rl.worlds import check_env, latent_sites

__all__ = ["PARAMETRIZATIONS", "PARAM_NAME", "PolicyGuide", "policy_guide"]

PARAMETRIZATIONS = ("time-indexed", "stationary", "features")
PARAM_NAME = "policy_logits"


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
        start_key, path_key = random.split(key)
        # The latent sites are trajectory_model's (a start or outcomes that are not random
        # have no site there); the draws are the same either way.
        latents = latent_sites(mdp)
        if "start" in latents:
            s0 = numpyro.sample("start", dist.Categorical(probs=jnp.asarray(mdp.start_probs)))
        else:
            s0 = draw_start(start_key, mdp)
        s0 = jnp.asarray(s0, jnp.int32)
        actions, outcomes = _draw_path(path_key, mdp, log_pi, s0)
        with numpyro.plate("time", horizon):
            numpyro.sample("actions", _PolicyActions(mdp, log_pi, s0, outcomes, actions))
            if "outcomes" in latents:
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
    """Actions (T,) from the policy and outcome indices (T,) from the true dynamics, in turn
    (int32; each outcome drawn by :func:`pgm_rl.dynamics.follow`, index 0 when K = 1)."""
    horizon = log_pi.shape[0]
    keys = random.split(key, horizon)
    dtype = jnp.asarray(mdp.outcome_probs).dtype
    kept, draw = jnp.zeros(1, jnp.int32), jnp.ones(1, bool)

    def step(state, inputs):
        step_key, log_pi_t = inputs
        action_key, outcome_key = random.split(step_key)
        action = random.categorical(action_key, log_pi_t[state]).astype(jnp.int32)
        noise = positive_uniform(outcome_key, (1,), dtype)
        path, _, outcome, _ = follow(mdp, state, action[None], kept, noise, draw)
        return path[1], (action, outcome[0])

    _, (actions, outcomes) = lax.scan(step, s0, (keys, log_pi))
    return actions, outcomes


def _path_states(mdp, s0, actions, outcomes):
    """The states s_0 .. s_{T-1} (T,) of the path from ``s0`` along ``actions`` and ``outcomes``."""
    return follow(mdp, s0, actions, outcomes)[0][..., :-1]


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
