"""The SMC forward pass: :func:`run_smc` and its one ``lax.scan`` over the steps (see
:mod:`pgm_rl.smc` for the estimator and its standard error).

One pass for every world: a particle draws its start from ``start_probs`` and, at each step,
its action from the proposal and its outcome from ``outcome_probs`` (S, A, K) with
:func:`pgm_rl.dynamics.follow`. A deterministic world is K = 1 (outcome 0) with a one-hot start:
the same pass, the draws then being certain.
"""

import numbers
import warnings
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax, random
from jax.scipy.special import logsumexp

from pgm_rl._checks import (
    check_beta,
    check_horizon,
    check_key,
    check_no_overflow,
    check_particles_fit,
    check_positive_int,
)
from pgm_rl._sampling import positive_uniform
from pgm_rl.dynamics import draw_start, follow
from pgm_rl.particles import check_proposal, multinomial_resample, proposal_values, twist
from pgm_rl.smc.proposals import inflation, proposal_mismatch, propose
from pgm_rl.smc.result import SMCResult
from pgm_rl.worlds import check_env

__all__ = ["run_smc"]


def run_smc(
    key, env, horizon, beta, num_particles, ess_threshold=0.5, proposal=None, log_factor=None
):
    """Run SMC with adaptive resampling on the trajectory posterior.

    Bootstrap proposals (actions from the uniform prior) by default; with ``proposal`` a
    policy q, particles propose a_t ~ q(. | s_t) and carry the incremental weight
    ``prior(a_t) exp(beta r_t) / q(a_t | s_t)``, so the weighted particles and ``log_z`` stay
    exact (unbiased Z) whatever the proposal, as long as it has full support. Outcomes of
    stochastic dynamics are still proposed from the dynamics.

    Twisting. The resampling decisions use intermediate targets twisted by the proposal's own
    soft value ``psi_t(s) = V^q_t(s)`` (:func:`proposal_values`, the ELBO to go of q): step t
    multiplies the weight by ``prior exp(beta r_t) / q * exp(psi_{t+1}(s_{t+1}) - psi_t(s_t))``
    (without the ``psi_0`` term at t = 0). The product over the steps telescopes to the
    untwisted weight (``psi_T = 0``), so the final weights and the Z estimate are those above;
    but a good proposal no longer degenerates: without the twist a particle that moved to a
    good state is penalised for the future reward it has not collected yet (measured on the
    notebook grid, T = 100: the exact posterior as proposal then gave mean TV 0.45 in Particle
    Gibbs; with the twist its weights are all equal).

    Proposal check. The step's locally optimal proposal ``pi_t(a | s)``, proportional to
    ``prior(a) E_{s'}[exp(beta r + psi_{t+1}(s'))]``, makes the twisted increments constant
    (``pi = q`` for the posterior). Drawing from q instead multiplies the variance of the
    weights of the particles at s by ``1 + chi2(pi_t(. | s) || q_t(. | s))``;
    ``proposal_ess`` is N over the largest weighted mean of that factor over the steps. It
    catches a proposal that ignores actions its own soft value says matter (a policy fitted at
    a much larger beta, near-zero entries), not a target mode that q's soft value misses too.

    Parameters
    ----------
    key : jax PRNG key
    env : TabularMDP
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.
    num_particles : int
        N >= 2.
    ess_threshold : float, default 0.5
        Resample when ESS < ``ess_threshold * N``; in [0, 1] (0 never resamples).
    proposal : array (T, S, A) of probabilities, or an object with ``.log_policy`` (T, S, A), optional
        E.g. a :class:`~pgm_rl.variational.FittedPolicy`, ``soft_bellman(...)`` or
        ``solve(...)``; checked by :func:`check_proposal` (every action must keep a positive
        probability: the uniform prior gives them all one).
    log_factor : callable, optional
        Your own model's extra terms f: ``log_factor(start (), actions (T,), outcomes (T,))``
        -> scalar, e.g. ``pgm_rl.trajectory_target(my_model, (env, T, beta)).factor``. The
        target is then ``p(trajectory | O) exp(f)``: f is a terminal potential, one last
        incremental weight on each final particle's whole trajectory (evaluated once per
        particle, vmapped), so the weights and ``log_z`` (now log Z of the Markov part plus
        log E[exp f]) stay exact and unbiased. The resampling decisions do not see f.

    Returns
    -------
    SMCResult

    Raises
    ------
    ValueError
        If the (T + 1, N) particle arrays would not fit in memory, N exceeds int32, or
        ``beta * max |reward|`` or a horizon's total overflows the working dtype.

    Warns
    -----
    SMCSaturationWarning
        When the genealogy SE has saturated (``result.saturated``): too few surviving
        ancestors for ``log_z_se`` to mean anything (see the module docstring).
    SMCProposalWarning
        When the proposal is far from the target (``result.proposal_mismatch``): at some step
        it leaves the particles worth less than :data:`MIN_PROPOSAL_ESS`, so ``log_z`` and
        ``log_z_se`` mean nothing (see the module docstring and ``result.problems()``).
    """
    check_key(key)
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = check_beta(beta)
    num_particles = check_positive_int(num_particles, "num_particles")
    if num_particles < 2:
        raise ValueError(f"num_particles must be an int >= 2, got {num_particles}")
    check_particles_fit(num_particles, horizon)  # int32 indices and memory
    check_no_overflow(mdp.outcome_rewards, horizon, beta)  # beta * reward and log Z in the dtype
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, numbers.Real):
        raise TypeError(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}")
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be a number in [0, 1], got {ess_threshold}")
    log_proposal = None if proposal is None else check_proposal(proposal, mdp, horizon)
    if log_factor is not None and not callable(log_factor):
        raise TypeError(
            "log_factor must be None or a callable (start, actions, outcomes) -> scalar, got "
            f"{type(log_factor).__name__}"
        )
    (states, rewards, actions), stats = _smc(
        key, mdp, beta, float(ess_threshold), horizon, num_particles, log_proposal, log_factor
    )
    result = SMCResult(actions, states, rewards, *stats)
    for category, line in result._problems():
        warnings.warn(f"SMC {line}", category, stacklevel=2)
    return result


@partial(jax.jit, static_argnums=(4, 5, 7))
def _smc(key, world, beta, ess_threshold, horizon, num_particles, log_proposal=None,
         log_factor=None):  # fmt: skip
    """The forward pass of :func:`run_smc` (checked arguments; ``log_proposal`` (T, S, A) or
    None for bootstrap proposals; ``log_factor`` the terminal potential f or None).

    Each step draws the particles' actions (:func:`~pgm_rl.smc.proposals.propose`) and outcomes
    (from the dynamics, :func:`pgm_rl.dynamics.follow`), adds the log importance ratio and the
    twist, and hands the reward term to :func:`_adaptive_resample`. The paths are then traced
    back through the ancestor indices. Returns ``((states (N, T + 1), rewards (N, T), actions
    (N, T)) of the final particles, statistics as in _smc_statistics)``.
    """
    n_actions = world.n_actions
    # The actions and the resampling use the keys of the former deterministic pass (the start
    # and the outcomes get keys of their own): runs on deterministic worlds, where those draws
    # are certain, repeat its numbers exactly.
    s0 = draw_start(random.fold_in(key, horizon), world, (num_particles,))
    values = mismatch = None
    if log_proposal is not None:
        values = proposal_values(log_proposal, world, beta)
        mismatch = proposal_mismatch(log_proposal, world, beta, values)
    reward_dtype = jnp.asarray(world.outcome_rewards).dtype
    uniform = jnp.full(num_particles, -jnp.log(num_particles), reward_dtype)
    draw_outcome = jnp.ones(1, bool)
    kept = jnp.zeros((num_particles, 1), jnp.int32)

    def forward(carry, inputs):
        states, log_w, log_z, eve, num_resampling = carry
        step_key, t = inputs
        action_key, resample_key = random.split(step_key)
        outcome_key = random.fold_in(step_key, 0)
        step_inflation = inflation(mismatch, t, states, log_w)
        actions, log_ratio = propose(action_key, states, t, n_actions, log_proposal)
        noise = positive_uniform(outcome_key, (num_particles, 1), reward_dtype)
        path, rewards, outcomes, _ = follow(
            world, states, actions[:, None], kept, noise, draw_outcome
        )
        entered = path[:, 1]
        log_w = log_w + log_ratio
        if values is not None:
            log_w = log_w + twist(values, t, states, entered)
        carry, ancestors = _adaptive_resample(
            resample_key, log_w, beta * rewards[:, 0], entered, log_z, eve, num_resampling,
            t < horizon - 1, ess_threshold, uniform,
        )  # fmt: skip
        return carry, (ancestors, entered, rewards[:, 0], actions, outcomes[:, 0], step_inflation)

    start = (s0, uniform, jnp.zeros((), reward_dtype), jnp.arange(num_particles),
             jnp.zeros((), jnp.int32))  # fmt: skip
    inputs = (random.split(key, horizon), jnp.arange(horizon))
    (_, log_w, log_z, eve, num_resampling), steps = lax.scan(forward, start, inputs)
    ancestors, entered, rewards, actions, outcomes, inflations = steps

    # ancestors[t] is the resampling after step t; step t's arrays are indexed by the particle
    # that took step t (before that resampling); ``first`` indexes s0.
    def trace_back(index, step_arrays):
        parent = step_arrays[0][index]
        return parent, tuple(array[parent] for array in step_arrays[1:])

    first, (path_entered, path_rewards, path_actions, path_outcomes) = lax.scan(
        trace_back,
        jnp.arange(num_particles),
        (ancestors, entered, rewards, actions, outcomes),
        reverse=True,
    )
    states = jnp.concatenate([s0[first][None], path_entered]).T
    if log_factor is not None:  # the terminal potential: one last incremental weight
        f = jax.vmap(log_factor)(s0[first], path_actions.T, path_outcomes.T)
        log_w = log_w + jnp.asarray(f, reward_dtype)
        total = logsumexp(log_w)
        log_w, log_z = log_w - total, log_z + total
    return (states, path_rewards.T, path_actions.T), _smc_statistics(
        log_w, log_z, eve, num_resampling, inflations
    )


def _smc_statistics(log_w, log_z, eve, num_resampling, inflations):
    """``(log_w, log_z, se, ess, num_resampling, num_ancestors, effective_ancestors,
    proposal_ess)`` of the final normalised log weights ``log_w`` (N,), Eve indices ``eve``
    (N,) and the proposal's per-step log weight inflation ``inflations`` (T,) (see
    :func:`~pgm_rl.smc.proposals.inflation`; zeros for bootstrap proposals).

    The weights are renormalised once more (their sum is 1 to working precision already), so
    ``ess`` lies in [1, N], ``effective_ancestors`` in [1, N] and the relative variance in
    [0, 1] (``se <= 1``) whatever the scale of the log weights.
    """
    num_particles = log_w.shape[0]
    log_w = log_w - logsumexp(log_w)
    weights = jnp.exp(log_w)
    eve_mass = jax.ops.segment_sum(weights, eve, num_segments=num_particles)
    ancestor_square = jnp.clip(jnp.sum(eve_mass**2), 1.0 / num_particles, 1.0)
    growth = (num_particles / (num_particles - 1.0)) ** (num_resampling + 1)
    # with k surviving Eves sum(eve_mass ** 2) >= 1 / k: the largest rel_var is then reached
    rel_var = jnp.clip(1.0 - growth * (1.0 - ancestor_square), 0.0, 1.0)
    ess = 1.0 / jnp.clip(jnp.sum(weights**2), 1.0 / num_particles, 1.0)
    return (
        log_w,
        log_z,
        jnp.sqrt(rel_var),
        ess,
        num_resampling,
        jnp.sum(eve_mass > 0),
        1.0 / ancestor_square,
        num_particles * jnp.exp(-jnp.max(inflations)),
    )


def _adaptive_resample(key, log_w, reward_term, states, log_z, eve, num_resampling,
                       may_resample, ess_threshold, uniform):  # fmt: skip
    """One SMC step's bookkeeping: weights, log Z and adaptive resampling.

    Adds the step's ``reward_term`` (N,) (``beta * r``) to the log weights ``log_w`` (N,) (which
    already hold the step's other increments), normalises them in the working precision and adds
    their log sum to ``log_z``; when ``may_resample`` and the ESS falls below
    ``ess_threshold * N``, resamples multinomially (weights reset to ``uniform``). Returns the
    new carry ``(states, log_w, log_z, eve, num_resampling)`` and the ancestor indices (N,).

    Precision: at large ``beta * |r|`` a log weight is a small number plus a huge one, and
    ``log_w - logsumexp(log_w)`` would lose the small part (the weights then summed to e^6.6 at
    beta = 1e17). So the largest reward term is split off first (equal rewards then leave the
    weights exactly as they were), then the largest log weight, each added to ``log_z`` on its
    own; what is left has a logsumexp in [0, log N], and ``logsumexp(log_w) == 0`` to working
    precision.
    """
    num_particles = log_w.shape[0]
    top_reward = jnp.max(reward_term)
    log_w = log_w + (reward_term - top_reward)
    top = jnp.max(log_w)
    log_w = log_w - top
    rest = logsumexp(log_w)
    log_w = log_w - rest
    ess = 1.0 / jnp.sum(jnp.exp(2.0 * log_w))
    resample = (ess < ess_threshold * num_particles) & may_resample
    ancestors = jnp.where(
        resample,
        multinomial_resample(key, log_w, num_particles),
        jnp.arange(num_particles),
    )
    carry = (
        states[ancestors],
        jnp.where(resample, uniform, log_w),
        log_z + top_reward + (top + rest),
        eve[ancestors],
        num_resampling + resample,
    )
    return carry, ancestors
