"""The notebook's per-time-step sampler: one MH chain per time step, fed by fresh prior rollouts.

Each step draws a fresh rollout of the uniform random walk. Every time step t then decides on
its own whether to take the new step ``(action a'_t, entered state s'_{t+1}, reward r'_t)``,
accepting with ``log u_t < beta * (r'_t - r_t)`` (log space; the notebook's
``min(exp(r) / 2, 1)`` clipping is not reproduced). Time step t's chain is independence MH
with the prior marginal of step t as proposal, so it targets that marginal tilted by
``exp(beta * r)``: :func:`stepwise_target` (exactly, below), not the trajectory posterior. Its
"trajectories" are not continuous: ``states[t + 1]`` is the state entered by the kept step t,
which need not be reachable from ``states[t]``.
"""

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random

from pgm_rl.dynamics import rollout
from pgm_rl.exact.checks import check_problem
from pgm_rl.kernels import base
from pgm_rl.kernels.base import TrajectoryKernel, mh_accept
from pgm_rl.messages import policy_marginals
from pgm_rl.worlds import require_deterministic

__all__ = [
    "StepwiseMH",
    "StepwiseMHState",
    "StepwiseTarget",
    "build_kernel",
    "init",
    "init_at",
    "stepwise_target",
]


class StepwiseMHState(NamedTuple):
    """Per-step kept values, not a rollout of ``actions``.

    ``actions`` (T,) int; ``states`` (T + 1,) int: ``states[0]`` is the start and
    ``states[t + 1]`` the state entered by the step kept at time t; ``rewards`` (T,).
    ``outcomes`` (T,) (all 0: deterministic dynamics) and ``start`` () as every kernel state.
    """

    actions: jax.Array
    states: jax.Array
    rewards: jax.Array

    @property
    def outcomes(self):
        return jnp.zeros_like(self.actions)

    @property
    def start(self):
        return self.states[..., 0]


class StepwiseMHInfo(NamedTuple):
    """``accept_prob``: mean over time steps of each step's acceptance probability (scalar);
    ``is_accepted``: which time steps took the new step, (T,) bool."""

    accept_prob: jax.Array
    is_accepted: jax.Array


def init_at(world, actions):
    """The state at the rollout of ``actions`` (T,)."""
    actions = jnp.asarray(actions, jnp.int32)
    states, rewards = rollout(world, actions)
    return StepwiseMHState(actions, states, rewards)


def init(key, world, horizon, beta=None, **params):
    """The state at a prior draw (:func:`pgm_rl.kernels.base.init`; deterministic dynamics)."""
    require_deterministic(world, "StepwiseMH")
    return init_at(world, base.init(key, world, horizon).actions)


def build_kernel(world, horizon):
    """``step(key, state, beta)``: a fresh prior rollout, then T independent accept steps.

    Defined for deterministic dynamics and a single start state only (a ``ValueError``
    otherwise): on a stochastic MDP a kept step (action, entered state) is not determined by
    the action, and the sampler targets no trajectory posterior anyway.
    """
    mdp = require_deterministic(world, "StepwiseMH")

    def step(key, state, beta):
        proposal_key, accept_key = random.split(key)
        actions = random.randint(proposal_key, (horizon,), 0, mdp.n_actions, jnp.int32)
        states, rewards = rollout(mdp, actions)
        proposal = (actions, states[1:], rewards)
        current = (state.actions, state.states[1:], state.rewards)
        log_ratio = beta * (rewards - state.rewards)
        (actions, entered, rewards), info = jax.vmap(mh_accept)(
            random.split(accept_key, horizon), log_ratio, proposal, current
        )
        states = jnp.concatenate([state.states[:1], entered])
        return StepwiseMHState(actions, states, rewards), StepwiseMHInfo(
            jnp.mean(info.accept_prob), info.is_accepted
        )

    return step


class StepwiseMH(TrajectoryKernel):
    """The notebook's per-time-step MH sampler (targets :func:`stepwise_target`, not the posterior).

    Samples ``"actions"`` (T,), ``"states"`` (T + 1,) and ``"rewards"`` (T,) are the per-step
    kept values: ``states[0]`` is the start, ``states[t + 1]`` the state entered by the step
    kept at time t. They are carried in the kernel's position (not re-derived from the
    actions, which they are not a rollout of).

    Parameters
    ----------
    model : callable
        A model built on :func:`pgm_rl.trajectory_model`.

    Examples
    --------
    >>> mcmc = MCMC(StepwiseMH(pgm_rl.trajectory_model), num_warmup=500, num_samples=1000)
    >>> mcmc.run(jax.random.key(0), env, horizon, beta)
    """

    build_step = None  # not a rung: it targets another distribution

    def build_step_at(self, world, horizon, beta, log_factor=None):
        if log_factor is not None:
            raise ValueError(
                "StepwiseMH targets per-step marginals (stepwise_target), not a trajectory "
                "posterior, so it cannot honour the model's trajectory-level site(s) "
                f"{', '.join(map(repr, log_factor.sites))}; every other registry kernel does"
            )
        return build_kernel(world, horizon)

    def init_kernel_state(self, key, world, horizon, beta, log_factor=None):
        return init(key, world, horizon, beta)

    def state_at(self, world, horizon, init_params, log_factor=None):
        return init_at(world, init_params["actions"])

    def position(self, sites):
        """The kept per-step values (``"actions"``, ``"states"``, ``"rewards"``)."""
        return lambda state: state._asdict()

    def postprocess_fn(self, model_args, model_kwargs):
        """Identity: the position already holds ``"actions"``, ``"states"`` and ``"rewards"``."""
        return dict


@dataclass(frozen=True, eq=False)
class StepwiseTarget:
    """What the notebook's per-time-step sampler (:class:`pgm_rl.kernels.StepwiseMH`) targets.

    Each time step t on its own: the prior (uniform random walk) marginal of the step
    ``(s_t, a_t)`` tilted by ``exp(beta * r(s_t, a_t))`` and normalised. The steps are not
    coupled, so this is not a distribution over trajectories and differs from the posterior.

    Attributes
    ----------
    mdp : TabularMDP
    horizon : int
        T.
    beta : float
    log_joint : array, shape (T, S, A)
        Log target probability of the step ``(s_t, a_t) = (s, a)`` at each time t.
    state_marginals : array, shape (T + 1, S)
        Row 0 is the start state; row t + 1 is the law of the state entered by action t,
        laid out like :attr:`ExactPosterior.state_marginals`.
    action_marginals : array, shape (T, A)
    expected_return : float
        Sum over t of the expected reward of step t (unscaled by beta).
    """

    mdp: object
    horizon: int
    beta: float
    log_joint: jax.Array
    state_marginals: jax.Array
    action_marginals: jax.Array
    expected_return: float


def stepwise_target(env, horizon, beta):
    """The per-time-step target of the notebook's per-step sampler, exactly.

    For each t: ``p_t(s, a) ∝ mu_t(s) (1/A) exp(beta r(s, a))`` with ``mu_t`` the prior
    (uniform random walk) state marginal at step t.

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.

    Returns
    -------
    StepwiseTarget
    """
    mdp, horizon, beta = check_problem(env, horizon, beta)
    require_deterministic(mdp, "stepwise_target")
    reward = jnp.asarray(mdp.reward)
    log_joint, state_marginals, action_marginals, step_returns = _stepwise(
        mdp, beta * reward, horizon
    )
    return StepwiseTarget(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_joint=log_joint,
        state_marginals=state_marginals,
        action_marginals=action_marginals,
        expected_return=math.fsum(np.asarray(step_returns, dtype=np.float64).tolist()),
    )


@partial(jax.jit, static_argnums=2)
def _stepwise(mdp, scaled_reward, horizon):
    """Tilted prior step marginals: log joint (T, S, A), states (T + 1, S), actions (T, A), (T,)."""
    next_state, reward = mdp.next_state, mdp.reward
    n_states, n_actions = next_state.shape
    uniform = jnp.full((horizon, n_states, n_actions), -jnp.log(n_actions), reward.dtype)
    prior_states = policy_marginals(uniform, mdp.outcome_states, mdp.outcome_probs, mdp.start_probs)
    log_mu = jnp.log(prior_states[:-1])  # (T, S), -inf where unreachable
    # Shift by each step's largest reachable scaled reward first: at beta * r ~ 1e8 in float32,
    # log_mu (~ -10) added to the unshifted value would be lost in its rounding.
    reachable = (prior_states[:-1] > 0)[:, :, None]
    top = jnp.max(jnp.where(reachable, scaled_reward[None], -jnp.inf), axis=(1, 2), keepdims=True)
    log_joint = log_mu[:, :, None] + (scaled_reward[None] - top)
    log_joint = log_joint - jax.scipy.special.logsumexp(log_joint, axis=(1, 2), keepdims=True)
    joint = jnp.exp(log_joint)
    entered = jax.vmap(lambda p: jnp.zeros(n_states, p.dtype).at[next_state].add(p))(joint)
    state_marginals = jnp.concatenate([prior_states[:1], entered])
    step_returns = jnp.sum(joint * reward, axis=(1, 2))
    return log_joint, state_marginals, joint.sum(axis=1), step_returns
