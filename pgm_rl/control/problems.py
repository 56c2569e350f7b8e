"""Continuous control problems: JAX dynamics and rewards under a Gaussian action prior.

A problem of horizon T has actions u_0..u_{T-1} (each (du,)) with the prior
u_t ~ N(0, diag(action_scale^2)) iid, states x_0..x_T (each (dx,)) with x_0 = ``x0`` and
x_{t+1} = dynamics(x_t, u_t) (+ w_t, w_t ~ N(0, diag(noise_scale^2)) when stochastic), and
rewards r_t = reward(x_t, u_t, x_{t+1}): the reward of the step, the grid's convention of the
state entered (the reward function also sees the state left, so Gymnasium's rewards of the state
left are matched exactly).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import check_positive_int, working_dtype


def _vector(value, name, size, what, positive=False):
    """``value`` as a (size,) float array of the working dtype (broadcast from a scalar), finite,
    and > 0 where ``positive``; traced values are only reshaped."""
    if isinstance(value, jax.core.Tracer):
        return jnp.broadcast_to(value, (size,)).astype(working_dtype())
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {value!r}") from None
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] not in (1, size)):
        raise ValueError(
            f"{name} must be a scalar or have shape ({size},), got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array}")
    if positive and not np.all(array > 0):
        raise ValueError(f"{name} must be > 0, got {array}")
    return jnp.asarray(np.broadcast_to(array, (size,)), dtype=working_dtype())


def _start(x0, name="x0", size=None):
    """``x0`` as a (dx,) float array of the working dtype, finite; traced values pass through."""
    if isinstance(x0, jax.core.Tracer):
        if x0.ndim != 1 or (size is not None and x0.shape[0] != size):
            raise ValueError(f"{name} must have shape ({size},), got shape {x0.shape}")
        return x0.astype(working_dtype())
    try:
        array = np.asarray(x0, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a 1-d array of floats (the start state), got {x0!r}"
        ) from None
    if array.ndim != 1 or array.shape[0] < 1 or (size is not None and array.shape[0] != size):
        want = f"({size},)" if size is not None else "(state_dim,) with state_dim >= 1"
        raise ValueError(f"{name} must have shape {want}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array}")
    return jnp.asarray(array, dtype=working_dtype())


@jax.tree_util.register_pytree_node_class
class ControlProblem:
    """A continuous control problem: JAX dynamics, a reward of each step, a Gaussian action prior.

    A JAX pytree: the arrays ``x0``, ``action_scale`` and ``noise_scale`` are its leaves; the
    functions ``dynamics``, ``reward``, ``observe`` and ``action_dim`` are static, so a jitted
    function of a problem compiles once per (dynamics, reward, shapes) and :meth:`with_start`
    reuses that code.

    Parameters
    ----------
    dynamics : callable
        ``dynamics(x, u) -> x'``: a pure JAX function of a state (dx,) and an action (du,)
        returning the next state (dx,) (before the noise, when stochastic).
    reward : callable
        ``reward(x, u, x') -> scalar``: the reward of the step from ``x`` with ``u`` into ``x'``.
    x0 : array, shape (dx,)
        The start state.
    action_dim : int
        du.
    action_scale : float or array (du,), optional
        Standard deviation of the action prior N(0, action_scale^2) per coordinate, > 0.
    noise_scale : float or array (dx,), optional
        Standard deviation of the additive dynamics noise w_t ~ N(0, noise_scale^2) per state
        coordinate, > 0; ``None`` (default) for deterministic dynamics.
    observe : callable, optional (keyword only)
        ``observe(obs) -> x``: the state of an observation (environments set it; identity when
        None).

    Raises
    ------
    ValueError
        If a scale is not > 0 or has the wrong shape, ``x0`` is not finite, or the first step
        from ``x0`` (with u = 0) returns a state that is not (dx,) and finite or a reward that
        is not a finite scalar (the message names step 0).
    """

    _leaves = ("x0", "action_scale", "noise_scale")
    _static = ("dynamics", "reward", "action_dim", "observe")

    def __init__(
        self, dynamics, reward, x0, action_dim, action_scale=1.0, noise_scale=None, *, observe=None
    ):
        for name, function in (("dynamics", dynamics), ("reward", reward), ("observe", observe)):
            if function is not None and not callable(function):
                raise TypeError(f"{name} must be a function, got {function!r}")
        self.dynamics = dynamics
        self.reward = reward
        self._init_common(x0, action_dim, action_scale, noise_scale, observe)

    def _init_common(self, x0, action_dim, action_scale, noise_scale, observe):
        self.action_dim = check_positive_int(action_dim, "action_dim")
        self.observe = observe
        self.x0 = _start(x0)
        self.action_scale = _vector(
            action_scale, "action_scale", self.action_dim, "a positive float", positive=True
        )
        self.noise_scale = (
            None
            if noise_scale is None
            else _vector(noise_scale, "noise_scale", self.state_dim, "a positive float", True)
        )
        self._check_first_step()

    # ------------------------------------------------------------------ pytree

    def tree_flatten(self):
        return (
            tuple(getattr(self, name) for name in self._leaves),
            tuple(getattr(self, name) for name in self._static),
        )

    @classmethod
    def tree_unflatten(cls, static, leaves):
        problem = object.__new__(cls)
        for name, value in zip(cls._leaves, leaves, strict=True):
            setattr(problem, name, value)
        for name, value in zip(cls._static, static, strict=True):
            setattr(problem, name, value)
        return problem

    def _replace(self, **changes):
        leaves, static = self.tree_flatten()
        values = dict(zip(self._leaves, leaves, strict=True)) | changes
        return type(self).tree_unflatten(static, tuple(values[name] for name in self._leaves))

    # ------------------------------------------------------------------ sizes and kinds

    @property
    def state_dim(self):
        """dx, the length of a state."""
        return int(self.x0.shape[-1])

    @property
    def is_stochastic(self):
        """Whether the dynamics add Gaussian noise (a latent ``"noise"`` site of the model)."""
        return self.noise_scale is not None

    def __repr__(self):
        kind = "noisy" if self.is_stochastic else "deterministic"
        return (
            f"{type(self).__name__}(state_dim={self.state_dim}, action_dim={self.action_dim}, "
            f"{kind})"
        )

    # ------------------------------------------------------------------ moving

    def _next(self, x, u):
        return self.dynamics(x, u)

    def _reward(self, x, u, x_next):
        return self.reward(x, u, x_next)

    def step(self, x, u, w=None):
        """One step: ``(x_next, reward)`` with ``x_next = dynamics(x, u) + w``.

        Parameters
        ----------
        x : array (dx,)
        u : array (du,)
        w : array (dx,), optional
            The noise of the step (None: no noise).

        Returns
        -------
        x_next : array (dx,)
        reward : scalar array
        """
        x = jnp.asarray(x)
        x_next = jnp.asarray(self._next(x, u)).astype(x.dtype)
        if w is not None:
            x_next = x_next + w
        return x_next, jnp.asarray(self._reward(x, u, x_next)).astype(x.dtype)

    def rollout(self, actions, noise=None):
        """The states and rewards of a trajectory from ``x0`` (``lax.scan``; vmap it to batch).

        Parameters
        ----------
        actions : array (T, du)
        noise : array (T, dx), optional
            The noise of each step; None runs the noise-free (mean) dynamics.

        Returns
        -------
        states : array (T + 1, dx)
            ``x0`` first.
        rewards : array (T,)

        Raises
        ------
        ValueError
            If ``actions`` or ``noise`` has the wrong shape, or (outside ``jit``/``vmap``) a
            state or reward comes out NaN or infinite (the message names the first such step).
        """
        actions = jnp.asarray(actions)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim or actions.shape[0] < 1:
            raise ValueError(
                f"actions must have shape (T, {self.action_dim}) with T >= 1, got shape "
                f"{actions.shape}"
            )
        if noise is not None:
            noise = jnp.asarray(noise)
            if noise.shape != (actions.shape[0], self.state_dim):
                raise ValueError(
                    f"noise must have shape ({actions.shape[0]}, {self.state_dim}) like the "
                    f"actions' steps, got shape {noise.shape}"
                )
        x0 = self.x0

        def one(x, inputs):
            u, w = inputs
            x_next, r = self.step(x, u, w)
            return x_next, (x_next, r)

        _, (states, rewards) = jax.lax.scan(one, x0, (actions.astype(x0.dtype), noise))
        states = jnp.concatenate([x0[None], states])
        if not isinstance(states, jax.core.Tracer) and not isinstance(rewards, jax.core.Tracer):
            _check_finite_path(states, rewards)
        return states, rewards

    def with_start(self, x0):
        """The same problem started from ``x0`` (dx,): same static fields, so compiled code of the
        problem is reused (``x0`` may be traced, e.g. inside a jitted receding-horizon loop)."""
        return self._replace(x0=_start(x0, size=self.state_dim))

    def state_from_observation(self, obs):
        """The state (dx,) of an environment's observation (identity unless ``observe`` is set)."""
        return jnp.asarray(obs if self.observe is None else self.observe(obs), working_dtype())

    # ------------------------------------------------------------------ checks

    def _check_first_step(self):
        du, dx = self.action_dim, self.state_dim
        u = jnp.zeros(du, self.x0.dtype)
        try:
            x_next = jnp.asarray(self._next(self.x0, u))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"dynamics failed at step 0 on x0 of shape ({dx},) and an action of shape "
                f"({du},): {error}"
            ) from None
        if x_next.shape != (dx,):
            raise ValueError(
                f"dynamics returned shape {x_next.shape} at step 0, expected the state's shape "
                f"({dx},) (x0's length)"
            )
        if not np.all(np.isfinite(np.asarray(x_next))):
            raise ValueError(
                f"dynamics returned a non-finite state at step 0: {np.asarray(x_next)}"
            )
        try:
            r = jnp.asarray(self._reward(self.x0, u, x_next.astype(self.x0.dtype)))
        except (TypeError, ValueError) as error:
            raise ValueError(f"reward failed at step 0: {error}") from None
        if r.shape != ():
            raise ValueError(f"reward returned shape {r.shape} at step 0, expected a scalar ()")
        if not math.isfinite(float(r)):
            raise ValueError(f"reward returned a non-finite value at step 0: {float(r)}")


def _check_finite_path(states, rewards):
    """Raise ``ValueError`` naming the first step whose state or reward is not finite."""
    bad_state = ~np.all(np.isfinite(np.asarray(states)), axis=-1)  # (T + 1,)
    bad_reward = ~np.isfinite(np.asarray(rewards))  # (T,)
    if bad_state.any() or bad_reward.any():
        step_state = int(np.argmax(bad_state)) - 1 if bad_state.any() else math.inf
        step_reward = int(np.argmax(bad_reward)) if bad_reward.any() else math.inf
        if step_state <= step_reward:
            raise ValueError(
                f"dynamics returned a non-finite state at step {step_state}: "
                f"{np.asarray(states)[step_state + 1]}"
            )
        raise ValueError(
            f"reward returned a non-finite value at step {step_reward}: "
            f"{np.asarray(rewards)[step_reward]}"
        )


def _matrix(value, name, shape, what):
    """``value`` as a finite float array of ``shape`` (None entries free); returns a NumPy array."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {value!r}") from None
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want} ({what}), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def _check_symmetric(array, name, definite):
    """Raise unless ``array`` is symmetric and positive semi-definite (``definite`` True:
    positive definite; None: symmetric only)."""
    scale = max(1.0, float(np.max(np.abs(array))))
    if not np.allclose(array, array.T, rtol=0.0, atol=1e-10 * scale):
        raise ValueError(
            f"{name} must be symmetric, got {name} - {name}.T of max |entry| "
            f"{float(np.max(np.abs(array - array.T))):.3g}"
        )
    smallest = float(np.linalg.eigvalsh(array).min())
    if definite and smallest <= 0:
        raise ValueError(
            f"{name} must be positive definite, got smallest eigenvalue {smallest:.3g}"
        )
    if definite is False and smallest < -1e-10 * scale:
        raise ValueError(
            f"{name} must be positive semi-definite, got smallest eigenvalue {smallest:.3g} "
            "(allow_indefinite=True accepts an indefinite Q)"
        )


@jax.tree_util.register_pytree_node_class
class LinearQuadratic(ControlProblem):
    """A linear-quadratic problem: x' = A x + B u (+ w), reward -1/2 (x'^T Q x' + u^T R u).

    ``A``, ``B``, ``Q``, ``R`` are leaves of the pytree (two problems of the same shapes share
    compiled code). The trajectory posterior is Gaussian: :func:`pgm_rl.control.solve_lq`.

    Parameters
    ----------
    A : array (dx, dx)
    B : array (dx, du)
    Q : array (dx, dx)
        Symmetric positive semi-definite state cost.
    R : array (du, du)
        Symmetric positive definite action cost.
    x0 : array (dx,)
    action_scale : float or array (du,), optional
    noise_scale : float or array (dx,), optional
    allow_indefinite : bool, optional (keyword only)
        Accept a symmetric but indefinite ``Q`` (a reward for leaving some directions of the
        state). The Gaussian prior keeps the posterior proper for a small enough beta only;
        ``solve_lq`` and ``soft_bellman_lq`` raise where it is not.

    Raises
    ------
    ValueError
        Naming the argument, if the shapes are inconsistent, an entry is not finite, Q is not
        symmetric positive semi-definite (symmetric, with ``allow_indefinite``) or R not
        symmetric positive definite.
    """

    _leaves = ("x0", "action_scale", "noise_scale", "A", "B", "Q", "R")
    _static = ("action_dim", "observe")

    def __init__(
        self, A, B, Q, R, x0, action_scale=1.0, noise_scale=None, *, allow_indefinite=False
    ):
        A = _matrix(A, "A", (None, None), "a square (dx, dx) matrix")
        dx = A.shape[0]
        if A.shape != (dx, dx) or dx < 1:
            raise ValueError(f"A must be a square (dx, dx) matrix, got shape {A.shape}")
        B = _matrix(B, "B", (dx, None), f"a ({dx}, du) matrix (dx from A)")
        du = B.shape[1]
        if du < 1:
            raise ValueError(f"B must have at least one column (du >= 1), got shape {B.shape}")
        Q = _matrix(Q, "Q", (dx, dx), f"a ({dx}, {dx}) matrix like A")
        R = _matrix(R, "R", (du, du), f"a ({du}, {du}) matrix (du from B)")
        _check_symmetric(Q, "Q", definite=None if allow_indefinite else False)
        _check_symmetric(R, "R", definite=True)
        x0 = _start(x0, size=dx)
        dtype = working_dtype()
        self.A, self.B, self.Q, self.R = (jnp.asarray(m, dtype) for m in (A, B, Q, R))
        self._init_common(x0, du, action_scale, noise_scale, None)

    @property
    def dynamics(self):
        """``x, u -> A x + B u`` (the noise-free step)."""
        return self._next

    @property
    def reward(self):
        """``x, u, x' -> -1/2 (x'^T Q x' + u^T R u)``."""
        return self._reward

    def _next(self, x, u):
        return self.A @ x + self.B @ u

    def _reward(self, x, u, x_next):
        return -0.5 * (x_next @ self.Q @ x_next + u @ self.R @ u)
