"""The notebook's per-time-step sampler: one MH chain per time step, fed by fresh prior rollouts.

Each step draws a fresh rollout of the uniform random walk. Every time step t then decides on
its own whether to take the new step ``(action a'_t, entered state s'_{t+1}, reward r'_t)``,
accepting with ``log u_t < beta * (r'_t - r_t)`` (log space; the notebook's
``min(exp(r) / 2, 1)`` clipping is not reproduced). Time step t's chain is independence MH
with the prior marginal of step t as proposal, so it targets that marginal tilted by
``exp(beta * r)``: :func:`pgm_rl.exact.stepwise_target`, not the trajectory posterior. Its
"trajectories" are not continuous: ``states[t + 1]`` is the state entered by the kept step t,
which need not be reachable from ``states[t]``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import random

from pgm_rl.dynamics import rollout
from pgm_rl.kernels.base import PureKernelAdapter, mh_accept
from pgm_rl.model import trajectory_problem


class StepwiseMHState(NamedTuple):
    """Per-step kept values, not a rollout of ``actions``.

    ``actions`` (T,) int; ``states`` (T + 1,) int: ``states[0]`` is the start and
    ``states[t + 1]`` the state entered by the step kept at time t; ``rewards`` (T,).
    """

    actions: jax.Array
    states: jax.Array
    rewards: jax.Array


class StepwiseMHInfo(NamedTuple):
    """``accept_prob``: mean over time steps of each step's acceptance probability (scalar);
    ``is_accepted``: which time steps took the new step, (T,) bool."""

    accept_prob: jax.Array
    is_accepted: jax.Array


def init(mdp, actions):
    """Start at the rollout of ``actions`` (T,)."""
    states, rewards = rollout(mdp, actions)
    return StepwiseMHState(actions, states, rewards)


def build_kernel(mdp, horizon, beta):
    """One step: a fresh prior rollout, then T independent accept steps (one per time step)."""

    def step(key, state):
        proposal_key, accept_key = random.split(key)
        actions = random.randint(proposal_key, (horizon,), 0, mdp.n_actions)
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


class StepwiseMH(PureKernelAdapter):
    """The notebook's per-time-step MH sampler (targets :func:`pgm_rl.exact.stepwise_target`).

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

    def build(self, model_args, model_kwargs):
        mdp, horizon, beta = trajectory_problem(self._model, model_args, model_kwargs)

        def init_fn(key, init_params):
            if init_params is None:
                actions = random.randint(key, (horizon,), 0, mdp.n_actions)
            else:
                actions = jnp.asarray(init_params["actions"])
            return init(mdp, actions)

        return init_fn, build_kernel(mdp, horizon, beta), lambda state: state._asdict()

    def postprocess_fn(self, model_args, model_kwargs):
        """Identity: the position already holds ``"actions"``, ``"states"`` and ``"rewards"``."""
        return dict
