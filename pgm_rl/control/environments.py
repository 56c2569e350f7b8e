"""Gymnasium's classic-control environments as pure JAX :class:`ControlProblem` s.

Each matches Gymnasium's ``env.step`` step for step (its constants, the clipping of actions and
velocities, the angle normalisation in the reward; checked to 1e-6 in
``tests/control/test_environments.py``), and gives Gymnasium's reward of each step. Gymnasium
computes some rewards from the state left (Pendulum); a problem's reward ``reward(x, u, x')``
sees the state left too, so it gives exactly Gymnasium's number. A terminating step (the mountain
car at the goal, the cart-pole beyond its thresholds) enters an absorbing state: later steps stay
and reward 0, pgm_rl's convention (Gymnasium leaves steps after termination undefined).

The dynamics and rewards are small frozen dataclasses, equal when their constants are, so two
problems built with the same constants share compiled code.
"""

import dataclasses
import math

import jax.numpy as jnp

from pgm_rl.control.problems import ControlProblem


def angle_normalize(angle):
    """``angle`` wrapped into [-pi, pi) (Gymnasium's ``angle_normalize``)."""
    return ((angle + jnp.pi) % (2 * jnp.pi)) - jnp.pi


# ----------------------------------------------------------------------------- Pendulum-v1


@dataclasses.dataclass(frozen=True)
class PendulumDynamics:
    """Pendulum-v1's step of (angle, angular velocity); angle 0 is upright."""

    g: float = 10.0
    m: float = 1.0
    length: float = 1.0
    dt: float = 0.05
    max_speed: float = 8.0
    max_torque: float = 2.0

    def __call__(self, x, u):
        th, thdot = x[0], x[1]
        u = jnp.clip(u[0], -self.max_torque, self.max_torque)
        accel = 3 * self.g / (2 * self.length) * jnp.sin(th) + 3.0 / (self.m * self.length**2) * u
        new_thdot = jnp.clip(thdot + accel * self.dt, -self.max_speed, self.max_speed)
        return jnp.stack([th + new_thdot * self.dt, new_thdot])


@dataclasses.dataclass(frozen=True)
class PendulumReward:
    """Pendulum-v1's reward, of the state left: -(angle^2 + 0.1 velocity^2 + 0.001 torque^2)."""

    max_torque: float = 2.0

    def __call__(self, x, u, x_next):
        u = jnp.clip(u[0], -self.max_torque, self.max_torque)
        return -(angle_normalize(x[0]) ** 2 + 0.1 * x[1] ** 2 + 0.001 * u**2)


def pendulum_state(obs):
    """Pendulum-v1's observation (cos, sin, angular velocity) -> (angle, angular velocity)."""
    obs = jnp.asarray(obs)
    return jnp.stack([jnp.arctan2(obs[1], obs[0]), obs[2]])


def pendulum(x0=(math.pi, 0.0), g=10.0, action_scale=2.0, noise_scale=None):
    """Gymnasium's Pendulum-v1: state (angle, angular velocity), action the torque (1,).

    The torque is clipped to [-2, 2] and the angular velocity to [-8, 8]; the reward of a step
    is Gymnasium's, ``-(angle_normalize(th)^2 + 0.1 thdot^2 + 0.001 u^2)`` of the state left
    (as Gymnasium computes it), in [-16.27, 0].

    Parameters
    ----------
    x0 : array (2,), optional
        The start; default hanging down at rest, (pi, 0) (the angle 0 is upright).
    g : float, optional
        Gravity (Gymnasium's ``g`` argument).
    action_scale : float, optional
        Standard deviation of the torque prior (default the largest torque, 2).
    noise_scale : float or array (2,), optional
        Additive Gaussian noise on the state (None: Gymnasium's deterministic dynamics).

    Returns
    -------
    ControlProblem
        Its ``state_from_observation`` maps Gymnasium's observation (cos, sin, velocity) to
        (angle, velocity).
    """
    return ControlProblem(
        PendulumDynamics(g=float(g)),
        PendulumReward(),
        x0,
        1,
        action_scale,
        noise_scale,
        observe=pendulum_state,
    )


# ----------------------------------------------------------------------------- MountainCarContinuous-v0


@dataclasses.dataclass(frozen=True)
class MountainCarDynamics:
    """MountainCarContinuous-v0's step of (position, velocity); the goal is absorbing."""

    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.45
    goal_velocity: float = 0.0
    power: float = 0.0015

    def at_goal(self, x):
        """Whether ``x`` is terminal (Gymnasium's ``terminated``)."""
        return (x[0] >= self.goal_position) & (x[1] >= self.goal_velocity)

    def __call__(self, x, u):
        position, velocity = x[0], x[1]
        force = jnp.clip(u[0], -1.0, 1.0)
        velocity = velocity + force * self.power - 0.0025 * jnp.cos(3 * position)
        velocity = jnp.clip(velocity, -self.max_speed, self.max_speed)
        position = jnp.clip(position + velocity, self.min_position, self.max_position)
        velocity = jnp.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        return jnp.where(self.at_goal(x), x, jnp.stack([position, velocity]))


@dataclasses.dataclass(frozen=True)
class MountainCarReward:
    """MountainCarContinuous-v0's reward: 100 on reaching the goal, minus 0.1 u^2 (u unclipped,
    as Gymnasium); 0 once at the goal (absorbing)."""

    dynamics: MountainCarDynamics = MountainCarDynamics()

    def __call__(self, x, u, x_next):
        reward = 100.0 * self.dynamics.at_goal(x_next) - 0.1 * u[0] ** 2
        return jnp.where(self.dynamics.at_goal(x), 0.0, reward)


def mountain_car(x0=(-0.5, 0.0), action_scale=1.0, noise_scale=None):
    """Gymnasium's MountainCarContinuous-v0: state (position, velocity), action the force (1,).

    The force is clipped to [-1, 1], the velocity to [-0.07, 0.07] and the position to
    [-1.2, 0.6] (stopping at the left wall); reaching position >= 0.45 with velocity >= 0
    rewards 100 and ends the episode (here: an absorbing state with reward 0); every step
    costs 0.1 u^2 of the unclipped action, as in Gymnasium.

    Parameters
    ----------
    x0 : array (2,), optional
        The start (Gymnasium draws the position from [-0.6, -0.4] at rest); default (-0.5, 0).
    action_scale : float, optional
        Standard deviation of the force prior (default 1, the largest force).
    noise_scale : float or array (2,), optional

    Returns
    -------
    ControlProblem
    """
    return ControlProblem(
        MountainCarDynamics(), MountainCarReward(), x0, 1, action_scale, noise_scale
    )


# ----------------------------------------------------------------------------- CartPole, continuous


@dataclasses.dataclass(frozen=True)
class CartPoleDynamics:
    """CartPole-v1's equations (Euler) with a continuous force u in [-force_mag, force_mag].

    State (x, x_dot, theta, theta_dot); beyond the thresholds the state is absorbing.
    """

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5
    force_mag: float = 10.0
    tau: float = 0.02
    x_threshold: float = 2.4
    theta_threshold: float = 12 * 2 * math.pi / 360

    def failed(self, x):
        """Whether ``x`` is terminal (Gymnasium's ``terminated``)."""
        return (jnp.abs(x[0]) > self.x_threshold) | (jnp.abs(x[2]) > self.theta_threshold)

    def __call__(self, x, u):
        position, velocity, theta, theta_dot = x[0], x[1], x[2], x[3]
        force = jnp.clip(u[0], -self.force_mag, self.force_mag)
        total_mass = self.masspole + self.masscart
        polemass_length = self.masspole * self.length
        costheta, sintheta = jnp.cos(theta), jnp.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        moved = jnp.stack(
            [
                position + self.tau * velocity,
                velocity + self.tau * xacc,
                theta + self.tau * theta_dot,
                theta_dot + self.tau * thetaacc,
            ]
        )
        return jnp.where(self.failed(x), x, moved)


@dataclasses.dataclass(frozen=True)
class CartPoleReward:
    """CartPole-v1's reward: 1 for every step taken before termination (the terminating step
    included), 0 from an absorbing (terminal) state."""

    dynamics: CartPoleDynamics = CartPoleDynamics()

    def __call__(self, x, u, x_next):
        return jnp.where(self.dynamics.failed(x), 0.0, 1.0)


def cart_pole(x0=(0.0, 0.0, 0.0, 0.0), action_scale=10.0, noise_scale=None):
    """CartPole-v1 with a continuous force: state (x, x_dot, theta, theta_dot), action (1,).

    Gymnasium's equations (Euler integration, tau = 0.02) with the force ``clip(u, -10, 10)``
    in place of the discrete push of +-10 (action 1 pushes +10, action 0 pushes -10: those are
    ``u = 10`` and ``u = -10`` here). Reward 1 per step until the cart leaves [-2.4, 2.4] or the
    pole leaves +-12 degrees (the terminating step rewards 1 too, as in Gymnasium); then the
    state is absorbing with reward 0.

    Parameters
    ----------
    x0 : array (4,), optional
        The start (Gymnasium draws each coordinate from [-0.05, 0.05]); default upright at rest.
    action_scale : float, optional
        Standard deviation of the force prior (default 10, the largest force).
    noise_scale : float or array (4,), optional

    Returns
    -------
    ControlProblem
    """
    return ControlProblem(CartPoleDynamics(), CartPoleReward(), x0, 1, action_scale, noise_scale)
