"""Model-predictive control by posterior inference: :func:`mpc` and :class:`Episode`.

At every step the planner (MPPI, :func:`pgm_rl.control.mppi`, or SMC,
:func:`pgm_rl.control.run_smc`) estimates the posterior mean of the next ``horizon`` actions
from the current state; the first is executed, and the rest, shifted by one step with the
prior mean (0) appended, is the next step's proposal mean (the warm start). Without an
environment the whole episode is one ``lax.scan`` of the problem's own dynamics (and noise);
with a Gymnasium environment each step acts through ``env.step`` and reads the state back from
the observation.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pgm_rl._checks import check_beta, check_horizon, check_key
from pgm_rl.control._importance import check_plan, check_sample_count, draw_noise
from pgm_rl.control.mppi import _mppi
from pgm_rl.control.smc import _smc

__all__ = ["PLANNER_DEFAULTS", "Episode", "mpc"]

# Measured on the pendulum swing-up (README "Continuous control"; tests/control/test_mpc.py).
PLANNER_DEFAULTS = {
    "mppi": {"horizon": 20, "beta": 1.0, "num_samples": 300, "iterations": 1},
    "smc": {"horizon": 20, "beta": 1.0, "num_particles": 300, "ess_threshold": 0.5},
}


class Episode(NamedTuple):
    """One MPC episode.

    Attributes
    ----------
    states : float array, shape (S + 1, dx)
        The start first (with an environment: the states read from its observations).
    actions : float array, shape (S, du)
        The actions executed (as planned; an environment may clip them).
    rewards : float array, shape (S,)
        The rewards of the steps (with an environment: the environment's rewards).
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray


def mpc(problem, steps, key, env=None, planner="mppi", **planner_options):
    """Run receding-horizon control for ``steps`` steps, planning by posterior inference.

    Parameters
    ----------
    problem : ControlProblem
        The model the planner uses (its ``x0`` is the start without ``env``).
    steps : int
        Number of steps S >= 1.
    key : jax PRNG key
    env : gymnasium.Env, optional
        Act in it: the start is the environment's current state (read through
        ``problem.state_from_observation`` of its current observation, so a caller may set
        ``env.unwrapped.state`` after ``reset``), each action goes through ``env.step``, each
        next state is read from the returned observation. The episode ends early when the
        environment terminates or truncates it (then S is the number of steps taken).
    planner : {"mppi", "smc"}
    **planner_options
        ``horizon`` (T), ``beta``, and for ``"mppi"`` ``num_samples`` and ``iterations``, for
        ``"smc"`` ``num_particles`` and ``ess_threshold``; missing ones are taken from
        :data:`PLANNER_DEFAULTS` (horizon 20, beta 1, 300 samples: measured to swing the
        pendulum up from hanging in 20 of 20 episodes, in the model and in Gymnasium).

    Returns
    -------
    Episode

    Raises
    ------
    ValueError
        An unknown planner or option (naming the allowed ones), bad values; a state read from
        the environment that is not (dx,) or not finite.
    """
    check_key(key)
    steps = check_sample_count(steps, "steps", minimum=1)
    if planner not in PLANNER_DEFAULTS:
        raise ValueError(f"planner must be one of {sorted(PLANNER_DEFAULTS)}, got {planner!r}")
    options = dict(PLANNER_DEFAULTS[planner])
    unknown = sorted(set(planner_options) - set(options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} of planner {planner!r}; it takes "
            f"{', '.join(sorted(options))}"
        )
    options.update(planner_options)
    horizon = check_horizon(options["horizon"])
    beta = check_beta(options["beta"])
    if planner == "mppi":
        size = check_sample_count(options["num_samples"], "num_samples")
        tuning = check_sample_count(options["iterations"], "iterations", minimum=1)
    else:
        size = check_sample_count(options["num_particles"], "num_particles")
        tuning = float(options["ess_threshold"])
        if not 0.0 <= tuning <= 1.0:
            raise ValueError(f"ess_threshold must be a number in [0, 1], got {tuning}")
    dtype = jnp.asarray(problem.x0).dtype
    plan = check_plan(0.0, horizon, problem.action_dim, "plan", dtype)
    if env is None:
        states, actions, rewards = _episode(problem, key, plan, beta, steps, planner, size, tuning)
        return Episode(np.asarray(states), np.asarray(actions), np.asarray(rewards))
    return _in_env(problem, env, key, plan, beta, steps, planner, size, tuning)


def _plan(problem, key, plan, beta, planner, size, tuning):
    """The planner's posterior mean (T, du) from ``problem.x0`` with proposal mean ``plan``."""
    scale = jnp.broadcast_to(problem.action_scale, plan.shape).astype(plan.dtype)
    if planner == "mppi":
        return _mppi(problem, key, beta, plan, scale, size, tuning).actions
    return _smc(problem, key, beta, tuning, plan, scale, size).actions


def _shift(actions):
    """The warm start: ``actions[1:]`` then the prior mean 0."""
    return jnp.concatenate([actions[1:], jnp.zeros_like(actions[:1])])


@partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _episode(problem, key, plan, beta, steps, planner, size, tuning):
    """An episode in the problem's own dynamics: ``(states (S + 1, dx), actions (S, du),
    rewards (S,))``, one ``lax.scan`` (vmap it over keys for several episodes)."""

    def one(carry, step_key):
        x, plan = carry
        plan_key, noise_key = random.split(step_key)
        actions = _plan(problem.with_start(x), plan_key, plan, beta, planner, size, tuning)
        w = draw_noise(problem, noise_key, ())
        x_next, r = problem.step(x, actions[0], w)
        return (x_next, _shift(actions)), (x_next, actions[0], r)

    _, (entered, actions, rewards) = lax.scan(one, (problem.x0, plan), random.split(key, steps))
    return jnp.concatenate([problem.x0[None], entered]), actions, rewards


@partial(jax.jit, static_argnums=(5, 6, 7))
def _env_step(problem, x, key, plan, beta, planner, size, tuning):
    """One planning step from state ``x``: ``(action (du,), next proposal mean (T, du))``."""
    actions = _plan(problem.with_start(x), key, plan, beta, planner, size, tuning)
    return actions[0], _shift(actions)


def _in_env(problem, env, key, plan, beta, steps, planner, size, tuning):
    """:func:`mpc` acting in a Gymnasium environment (a Python loop over ``env.step``)."""
    unwrapped = getattr(env, "unwrapped", env)
    if hasattr(unwrapped, "_get_obs"):
        obs = unwrapped._get_obs()
    elif getattr(unwrapped, "state", None) is not None:
        obs = np.asarray(unwrapped.state)
    else:
        raise ValueError("env has no current state: call env.reset() before mpc")
    read = jax.jit(problem.state_from_observation)
    x = _read_state(problem, read, obs, 0)
    states, actions, rewards = [x], [], []
    for t, step_key in enumerate(random.split(key, steps)):
        u, plan = _env_step(problem, jnp.asarray(x), step_key, plan, beta, planner, size, tuning)
        u = np.asarray(u)
        obs, reward, terminated, truncated, _ = env.step(u.astype(env.action_space.dtype))
        x = _read_state(problem, read, obs, t + 1)
        states.append(x)
        actions.append(u)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return Episode(np.stack(states), np.stack(actions), np.asarray(rewards))


def _read_state(problem, read, obs, t):
    """The state (dx,) of observation ``obs`` (step ``t``) by ``read`` (the problem's
    ``state_from_observation``, jitted), checked."""
    x = np.asarray(read(np.asarray(obs)))
    if x.shape != (problem.state_dim,) or not np.isfinite(x).all():
        raise ValueError(
            f"problem.state_from_observation gave {x!r} for the observation at step {t}, "
            f"expected a finite state of shape ({problem.state_dim},)"
        )
    return x
