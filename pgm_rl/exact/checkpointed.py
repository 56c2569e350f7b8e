"""Bounded memory: the exact posterior and the soft-Bellman policy with V kept at checkpoints.

``solve(env, T, beta, checkpoint=True)`` and ``soft_bellman(..., checkpoint=True)`` run the
backward pass once and keep V_t (a double-word pair) only at the starts of ~sqrt(T) segments of
L = ceil(sqrt(T)) steps: a ``lax.scan`` over segments with an inner scan over steps. ``log_z``
(``elbo``) needs only V_0 and is computed at once. Everything else is a forward pass over the
segments that recomputes a segment's V from its end's checkpoint (L rows), then pushes the
marginals or the draws through it, recomputing each step's policy from V_{t+1}: peak memory
O(S (sqrt(T) + A K)) (+ n T for n draws) instead of the (T, S, A) policy and the (T + 1, S)
marginals, at about three backward passes and one forward pass of time per question.

The step arithmetic is the full mode's own (:func:`pgm_rl.messages.posterior_step`,
:func:`~pgm_rl.messages.soft_step`, :func:`~pgm_rl.messages.forward_step`,
:func:`pgm_rl.exact.trajectories.draw_step`), so the values agree with it to rounding and the
draws are the same for the same key (the same uniforms per step).
"""

import math
from functools import cached_property, partial
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pgm_rl._checks import check_fits_in_memory, check_key, check_positive_int, itemsize
from pgm_rl.exact.checks import state_mask
from pgm_rl.exact.sharding import replicated, trim
from pgm_rl.exact.trajectories import draw_step, start_draws, step_uniforms
from pgm_rl.messages import (
    backward_arrays,
    forward_arrays,
    forward_step,
    posterior_step,
    soft_arrays,
    soft_step,
    start_posterior,
)

__all__ = ["CheckpointedPosterior", "CheckpointedSoftBellman", "segments"]

NOT_KEPT = (
    "checkpoint=True does not keep the (T, S, A) policy; use policy_at(t) / marginals_at(ts), "
    "or solve without checkpoint"
)


def segments(horizon):
    """``(L, F, r)``: segments of L = ceil(sqrt(T)) steps, F full ones then one of r in [1, L].

    V is kept at t = 0, L, ..., F L (F + 1 checkpoints; V_T = 0 is known).
    """
    length = math.isqrt(horizon - 1) + 1
    full = (horizon - 1) // length
    return length, full, horizon - full * length


# ----------------------------------------------------------------------------- jitted passes


def _stepper(kind, ns, logp, r_hi, r_lo):
    """``step(v_hi, v_lo, rows=None) -> (V_t hi, lo, log pi_t)`` of every state or of ``rows``,
    given V_{t+1} (S,): the posterior's or the soft-Bellman backward step."""
    posterior = kind == "posterior"
    arrays = (backward_arrays if posterior else soft_arrays)(ns, logp, r_hi, r_lo)
    step_fn = posterior_step if posterior else soft_step

    def step(v_hi, v_lo, rows=None):
        own = arrays if rows is None else tuple(a[rows] for a in arrays)
        return step_fn(v_hi, v_lo, *own)

    return step


def _values(step, v_end, length):
    """V_t for the ``length`` steps before ``v_end`` (a pair (S,)): V at the first of them and
    the pair of (length, S) stacks, row i = V_{t0 + i}."""

    def body(v, _):
        hi, lo, _ = step(*v)
        return (hi, lo), (hi, lo)

    return lax.scan(body, v_end, None, length=length, reverse=True)


def _segment_inputs(step, v_end, length):
    """V_{t+1} for the ``length`` steps of a segment ending at ``v_end``: a pair (length, S)."""
    _, (hi, lo) = _values(step, v_end, length)
    return (
        jnp.concatenate([hi[1:], v_end[0][None]]),
        jnp.concatenate([lo[1:], v_end[1][None]]),
    )


@partial(jax.jit, static_argnames=("kind", "horizon"))
def _checkpoints(ns, logp, r_hi, r_lo, kind, horizon):
    """The backward pass keeping V_{jL}, j = 0 .. F: a pair (F + 1, S)."""
    length, full, rest = segments(horizon)
    step = _stepper(kind, ns, logp, r_hi, r_lo)

    def body(v, _):
        hi, lo, _ = step(*v)
        return (hi, lo), None

    def segment(v, _):
        v_start, _ = lax.scan(body, v, None, length=length)
        return v_start, v_start

    zeros = jnp.zeros(ns.shape[0], r_hi.dtype)
    v_last, _ = lax.scan(body, (zeros, zeros), None, length=rest)  # V_{F L}
    _, (hi, lo) = lax.scan(segment, v_last, None, length=full, reverse=True)
    return jnp.concatenate([hi, v_last[0][None]]), jnp.concatenate([lo, v_last[1][None]])


def _over_segments(run, carry, cp_hi, cp_lo, horizon):
    """``run(carry, v_end, t0, length) -> (carry, outputs (length, ...))`` over every segment in
    time order; the outputs joined along time, (T, ...)."""
    length, full, rest = segments(horizon)
    zeros = jnp.zeros_like(cp_hi[0])

    def segment(carry, inputs):
        t0, v_hi, v_lo = inputs
        return run(carry, (v_hi, v_lo), t0, length)

    t0s = jnp.arange(full, dtype=jnp.int32) * length
    carry, outs = lax.scan(segment, carry, (t0s, cp_hi[1:], cp_lo[1:]))
    carry, last = run(carry, (zeros, zeros), jnp.int32(full * length), rest)
    outs = jax.tree.map(lambda o, x: jnp.concatenate([o.reshape(-1, *o.shape[2:]), x]), outs, last)
    return carry, outs


@partial(jax.jit, static_argnames=("kind", "n_rows"))
def _forward(mu0, cp_hi, cp_lo, slots, absorb, ns, logp, r_hi, r_lo, reward, kind, n_rows):
    """The forward pass over the segments: the marginals of the ``n_rows`` steps named by
    ``slots`` (T + 1,) (row ``slots[t]`` of the result is mu_t; n_rows drops the step), and the
    action marginals (T, A), step returns (T,) and hits (T + 1,) of
    :func:`pgm_rl.messages.forward` (``absorb`` (S,) bool or None)."""
    horizon = slots.shape[0] - 1
    step = _stepper(kind, ns, logp, r_hi, r_lo)
    arrays = forward_arrays(ns, logp, r_hi, r_lo, reward)
    if absorb is None:
        hit0, mu_start = jnp.zeros((), mu0.dtype), mu0
    else:
        hit0 = jnp.sum(jnp.where(absorb, mu0, 0.0))
        mu_start = jnp.where(absorb, 0.0, mu0)
    rows = jnp.zeros((n_rows, mu0.shape[0]), mu0.dtype).at[slots[0]].set(mu_start, mode="drop")

    def run(carry, v_end, t0, length):
        def body(carry, inputs):
            mu, rows = carry
            t, v_hi, v_lo = inputs
            log_pi = step(v_hi, v_lo)[2]
            mu_next, out = forward_step(
                mu, log_pi, v_hi, v_lo, arrays, absorb, kind == "posterior", kl=False
            )
            return (mu_next, rows.at[slots[t + 1]].set(mu_next, mode="drop")), out

        v_hi, v_lo = _segment_inputs(step, v_end, length)
        steps = t0 + jnp.arange(length, dtype=jnp.int32)
        return lax.scan(body, carry, (steps, v_hi, v_lo))

    (_, rows), (actions, step_returns, _, hits) = _over_segments(
        run, (mu_start, rows), cp_hi, cp_lo, horizon
    )
    return rows, actions, step_returns, jnp.concatenate([hit0[None], hits])


@partial(jax.jit, static_argnames=("kind", "horizon"))
def _log_policy_at(t, cp_hi, cp_lo, ns, logp, r_hi, r_lo, kind, horizon):
    """log pi_t (S, A), recomputed from the checkpoint at the end of t's segment."""
    length, full, _ = segments(horizon)
    step = _stepper(kind, ns, logp, r_hi, r_lo)
    j = t // length
    end = jnp.minimum((j + 1) * length, horizon)
    row = jnp.minimum(j + 1, full)
    v_end = tuple(jnp.where(j < full, cp[row], jnp.zeros_like(cp[0])) for cp in (cp_hi, cp_lo))
    v_next = lax.fori_loop(0, end - t - 1, lambda _, v: step(*v)[:2], v_end)
    return step(*v_next)[2]


@partial(jax.jit, static_argnames=("kind", "horizon", "num_samples"))
def _sample(key, mu0, cp_hi, cp_lo, ns, logp, r_hi, r_lo, reward, kind, horizon, num_samples):
    """``num_samples`` draws, segment by segment: actions (n, T), states (n, T + 1), rewards
    (n, T), with the full mode's starts and uniforms (:func:`~pgm_rl.exact.trajectories.
    start_draws`, :func:`~pgm_rl.exact.trajectories.step_uniforms`): the same draws."""
    dtype = r_hi.dtype
    step = _stepper(kind, ns, logp, r_hi, r_lo)
    starts = start_draws(key, mu0, num_samples, dtype)
    uniforms = jnp.swapaxes(step_uniforms(key, num_samples, horizon, ns.shape[2] == 1, dtype), 0, 1)
    draw = jax.vmap(
        partial(draw_step, posterior=kind == "posterior"), in_axes=(0, 0, 0) + (None,) * 7
    )

    def run(states, v_end, t0, length):
        def body(states, inputs):
            u, v_hi, v_lo = inputs
            log_pi = step(v_hi, v_lo, rows=states)[2]  # (n, A): only the draws' rows
            new, action, gain = draw(states, u, log_pi, ns, logp, r_hi, r_lo, reward, v_hi, v_lo)
            return new, (action, new, gain)

        v_hi, v_lo = _segment_inputs(step, v_end, length)
        u = lax.dynamic_slice_in_dim(uniforms, t0, length)
        return lax.scan(body, states, (u, v_hi, v_lo))

    _, (actions, states, rewards) = _over_segments(run, starts, cp_hi, cp_lo, horizon)
    return (
        actions.T.astype(jnp.int32),
        jnp.concatenate([starts[None], states]).T,
        rewards.T,
    )


# ----------------------------------------------------------------------------- results


def _check_steps(ts, horizon):
    """``ts`` as an int64 NumPy array of steps in [0, T] (0-d or 1-d), else ValueError naming ts."""
    try:
        array = np.asarray(ts)
    except ValueError:  # ragged
        array = np.asarray(None)
    if array.ndim == 1 and array.size == 0:
        array = array.astype(np.int64)
    if array.dtype == bool or array.dtype.kind not in "iu" or array.ndim > 1:
        raise ValueError(
            f"ts must be an int or a 1-D sequence of ints (steps in [0, {horizon}]), got {ts!r}"
        )
    if array.size and (array.min() < 0 or array.max() > horizon):
        raise ValueError(f"ts must lie in [0, {horizon}] (the steps 0..T), got {ts!r}")
    return array.astype(np.int64)


class _Checkpointed:
    """What the checkpointed results share (``kind``: the backward step and the outcomes;
    subclasses set ``_mu0``, the distribution of s_0 over the (padded) states)."""

    kind = None

    def __init__(self, mdp, horizon, beta, dyn):
        self.mdp = mdp
        self.horizon = horizon
        self.beta = beta
        # what trim / replicated read (not the NumPy copies of the arrays placed below)
        self._dyn = SimpleNamespace(
            mesh=getattr(dyn, "mesh", None), n_states=getattr(dyn, "n_states", None)
        )
        self._arrays = tuple(jnp.asarray(a) for a in dyn.arrays)
        self._checkpoints = _checkpoints(*self._arrays[:4], kind=self.kind, horizon=horizon)

    @property
    def segment_length(self):
        """L: V is kept every L = ceil(sqrt(T)) steps."""
        return segments(self.horizon)[0]

    def _run(self, ts=(), absorb=None):
        """:func:`_forward` for the unique steps of ``ts``; caches the summary it gives."""
        horizon = self.horizon
        unique, inverse = np.unique(np.asarray(ts, np.int64), return_inverse=True)
        n_rows = max(unique.size, 1)  # JAX cannot index an empty buffer, even to drop
        slots = np.full(horizon + 1, n_rows, np.int32)
        slots[unique] = np.arange(unique.size, dtype=np.int32)
        mu0 = self._mu0
        rows, actions, step_returns, hits = _forward(
            mu0,
            *self._checkpoints,
            slots,
            absorb,
            *self._arrays,
            kind=self.kind,
            n_rows=n_rows,
        )
        if absorb is None and "_summary" not in self.__dict__:
            actions, step_returns = replicated(self._dyn, actions, step_returns)
            self.__dict__["_summary"] = (
                actions,
                math.fsum(np.asarray(step_returns, np.float64).tolist()),
            )
        return rows, inverse, hits

    @cached_property
    def _summary(self):
        """``(action marginals (T, A), expected return)``."""
        self._run()
        return self.__dict__["_summary"]

    @property
    def action_marginals(self):
        """Probability of taking action a at step t, (T, A) (computed once, cached)."""
        return self._summary[0]

    @property
    def expected_return(self):
        """Expected sum of rewards, unscaled (computed once, cached)."""
        return self._summary[1]

    def marginals_at(self, ts):
        """State marginals at the steps ``ts``, without the (T + 1, S) array.

        Parameters
        ----------
        ts : int or sequence of int
            Steps in [0, T] (repeats allowed; 0 is the start).

        Returns
        -------
        array, shape (len(ts), S), or (S,) for an int ``ts``
        """
        steps = _check_steps(ts, self.horizon)
        rows, inverse, _ = self._run(steps.reshape(-1))
        rows = trim(self._dyn, rows)[jnp.asarray(inverse.reshape(-1))]
        return rows.reshape(*steps.shape, self.mdp.n_states)

    def log_policy_at(self, t):
        """log pi_t(a | s), shape (S, A), recomputed from the nearest checkpoint after t.

        Parameters
        ----------
        t : int
            A step in [0, T).
        """
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"t must be an int step in [0, {self.horizon}), got {t!r}")
        if not 0 <= t < self.horizon:
            raise ValueError(f"t must lie in [0, {self.horizon}) (the steps of an action), got {t}")
        log_pi = _log_policy_at(
            jnp.int32(t),
            *self._checkpoints,
            *self._arrays[:4],
            kind=self.kind,
            horizon=self.horizon,
        )
        return trim(self._dyn, log_pi, axis=0)

    def policy_at(self, t):
        """Action probabilities pi_t(a | s), shape (S, A); ``t`` as in :meth:`log_policy_at`."""
        return jnp.exp(self.log_policy_at(t))

    def sample(self, key, num_samples):
        """Draw exact iid trajectories segment by segment (the full mode's draws for the key).

        Returns a dict with ``"actions"`` (n, T) int, ``"states"`` (n, T + 1) int and
        ``"rewards"`` (n, T).
        """
        check_key(key)
        num_samples = check_positive_int(num_samples, "num_samples")
        check_fits_in_memory(
            6 * num_samples * (self.horizon + 1) * itemsize(),
            "num_samples",
            num_samples,
            f"{num_samples} draws of horizon {self.horizon}",
            "draw fewer samples per call",
        )
        actions, states, rewards = _sample(
            key,
            self._mu0,
            *self._checkpoints,
            *self._arrays,
            kind=self.kind,
            horizon=self.horizon,
            num_samples=num_samples,
        )
        return {"actions": actions, "states": states, "rewards": rewards}

    def reach_probability(self, cells):
        """Probability of being in any of ``cells`` at least once in steps 0..T (``cells`` as in
        :meth:`pgm_rl.exact.ExactPosterior.reach_probability`)."""
        mask = np.asarray(state_mask(self.mdp, cells))
        padded = np.zeros(self._mu0.shape[0], bool)
        padded[: mask.size] = mask
        hits = replicated(self._dyn, self._run(absorb=jnp.asarray(padded))[2])[0]
        return float(math.fsum(np.asarray(hits, np.float64).tolist()))

    def _not_kept(self, *args, **kwargs):
        raise ValueError(NOT_KEPT)

    log_prob = path_probability = _not_kept

    def __getattr__(self, name):
        if name in ("log_policy", "policy", "state_marginals", "messages"):
            raise AttributeError(f"{type(self).__name__}.{name}: {NOT_KEPT}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class CheckpointedPosterior(_Checkpointed):
    """The exact trajectory posterior with V kept at ~sqrt(T) checkpoints (``solve(...,
    checkpoint=True)``); memory O(S (sqrt(T) + A K)).

    Attributes
    ----------
    mdp : TabularMDP
    horizon : int
        T.
    beta : float
    log_z : float
        Log normaliser (computed at once).
    expected_return : float
        Posterior expectation of the sum of rewards (one forward pass, cached).
    action_marginals : array, shape (T, A)
        (same pass, cached).

    Methods: ``marginals_at(ts)`` (len(ts), S), ``policy_at(t)`` / ``log_policy_at(t)`` (S, A),
    ``sample(key, n)``, ``reach_probability(cells)``, as :class:`~pgm_rl.exact.ExactPosterior`'s
    (start and outcomes from the posterior). ``log_policy``, ``state_marginals``, ``messages``,
    ``log_prob`` and ``path_probability`` are refused: solve without checkpoint for them.
    """

    kind = "posterior"

    def __init__(self, mdp, horizon, beta, dyn):
        super().__init__(mdp, horizon, beta, dyn)
        (z_hi, z_lo), self._mu0 = start_posterior(dyn.log_p0, *self._checkpoints)
        z_hi, z_lo = replicated(dyn, z_hi, z_lo)
        self.log_z = float(z_hi) + float(z_lo)

    def __repr__(self):
        return (
            f"CheckpointedPosterior(mdp={self.mdp!r}, horizon={self.horizon}, "
            f"beta={self.beta:g}, log_z={self.log_z:.10g}, segment_length={self.segment_length})"
        )


class CheckpointedSoftBellman(_Checkpointed):
    """The soft-Bellman policy with V kept at ~sqrt(T) checkpoints (``soft_bellman(...,
    checkpoint=True)``), run in the true dynamics; memory O(S (sqrt(T) + A K)).

    Attributes
    ----------
    mdp, horizon, beta
    elbo : float
        E_{s_0}[V_0(s_0)] (computed at once).
    expected_return : float
        Expected sum of rewards of the policy in the true dynamics (cached).
    action_marginals : array, shape (T, A)

    Methods as :class:`CheckpointedPosterior` (start and outcomes from the world itself).
    """

    kind = "soft"

    def __init__(self, mdp, horizon, beta, dyn):
        super().__init__(mdp, horizon, beta, dyn)
        v_hi, v_lo = (
            np.asarray(v, np.float64)[: mdp.n_states]
            for v in replicated(dyn, self._checkpoints[0][0], self._checkpoints[1][0])
        )
        p0 = np.asarray(mdp.start_probs, np.float64)
        support = p0 > 0
        self.elbo = math.fsum(
            (p0[support] * v_hi[support]).tolist() + (p0[support] * v_lo[support]).tolist()
        )
        start = np.zeros(dyn.log_p0.shape[0], self._arrays[2].dtype)
        start[: mdp.n_states] = np.asarray(mdp.start_probs)
        self._mu0 = jnp.asarray(start)

    def __repr__(self):
        return (
            f"CheckpointedSoftBellman(mdp={self.mdp!r}, horizon={self.horizon}, "
            f"beta={self.beta:g}, elbo={self.elbo:.10g}, segment_length={self.segment_length})"
        )
