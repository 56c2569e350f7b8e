"""Particle Gibbs: conditional SMC with ancestor sampling over the action sequence.

One MCMC step is one conditional SMC sweep (Andrieu, Doucet and Holenstein 2010) with
ancestor sampling (Lindsten, Jordan and Schön 2014): ``N - 1`` free particles propose actions
from the uniform prior and carry the incremental weight ``beta * r_t``; particle ``N - 1`` is
the reference trajectory. All particles are resampled (multinomially) at every step.

Ancestor sampling. The latent variables are the start, the actions and the outcome indices
(all 0 on deterministic dynamics, K = 1); the state is a function of them. The reference's
remaining steps ``(a'_t, k'_t), ..., (a'_{T-1}, k'_{T-1})`` can therefore be grafted onto any
particle ``j``: they then start from particle ``j``'s state ``s_t^j``. The ancestor weight is
``w_{t-1}^j * gamma(x^j_{0:t-1}, x'_{t:T-1}) / gamma(x^j_{0:t-1})``, which here is
``w_{t-1}^j * exp(L_t(s_t^j))`` with ``L`` from :func:`pgm_rl.dynamics.log_values_to_go`: beta
times the return of the reference's remaining steps taken from ``s`` plus the log prior of its
outcome indices read from the states that path visits (the action prior is the same for every
``j``). ``L`` is a (T + 1, S) table computed once per sweep by a backward pass. At t = 0 the
same rule picks the reference's start among the particles' prior-drawn starts (weights 1
before the first step). Conditioning on states instead (an indicator ``s_t^j == s_t'``) would
be valid too but keeps fewer ancestors.

Guided proposals. With a proposal policy q (``ParticleGibbs(model, proposal=...)``) the free
particles draw a_t ~ q_t(. | s_t) and every particle, the reference included, carries the
incremental weight ``prior(a_t) exp(beta r_t) / q_t(a_t | s_t)`` (the prior is uniform, so
``beta r_t - log q_t(a_t | s_t)`` up to a constant). Conditional SMC leaves the posterior
invariant for any proposal with full support. The ancestor weight is unchanged: it is
``w_{t-1}^j`` (now the importance weight) times the TARGET's ratio
``gamma(a^j_{0:t-1}, a'_{t:T-1}) / gamma(a^j_{0:t-1})`` (Lindsten, Jordan and Schön 2014,
eq. 9), in which the proposal does not appear. The intermediate targets are twisted by the
proposal's soft value ``psi = V^q`` (:func:`pgm_rl.smc.proposal_values`), as in
:func:`pgm_rl.smc.run_smc`: the increments gain ``psi_{t+1}(s_{t+1}) - psi_t(s_t)`` and the
ancestor weights ``- psi_t(s_t^j)`` (t >= 1). The final target is unchanged (``psi_T = 0``),
so this is still conditional SMC for the posterior; without the twist a good proposal stalls
(the exact posterior as proposal on the notebook grid, T = 100: mean TV 0.45, R-hat 6e15).

Your own model's terms f (``log_factor``, :mod:`pgm_rl.kernels.base`) are a terminal
potential: the final weights gain ``weight(beta) f(x^j)`` for each particle's whole trajectory
``x^j``, and at each step t the ancestor weights gain ``weight(beta) f`` of the candidate that
ancestor sampling would make, particle j's prefix ``x^j_{0:t-1}`` (its start, actions and
outcome indices) joined to the reference's remaining steps: the target's ratio
``gamma(x^j_{0:t-1}, x'_{t:T-1}) / gamma(x^j_{0:t-1})`` now holds f of the joined trajectory.
The particles' paths are then carried through the sweep (gathered at each resampling), and f
is evaluated N times per step and N times at the end: ``N (T + 1)`` evaluations of O(T) per
sweep.
"""

import jax
import jax.numpy as jnp
from jax import lax, random

from pgm_rl._checks import check_positive_int
from pgm_rl._sampling import positive_uniform
from pgm_rl.dynamics import draw_start, log_values_to_go
from pgm_rl.exact import soft_bellman
from pgm_rl.kernels.base import MHInfo, TrajectoryKernel, factor_at, init, init_state
from pgm_rl.particles import check_proposal, multinomial_resample, proposal_values, twist

__all__ = [
    "GuidedParticleGibbs",
    "ParticleGibbs",
    "build_kernel",
    "init",
    "soft_bellman_proposal",
]


def soft_bellman_proposal(mdp, horizon, beta, factor=0.1):
    """A proposal for the notebook-scale problems: ``soft_bellman(mdp, horizon, factor * beta)``.

    Deliberately not the answer (a cooler, less committed policy); the importance weights of
    :class:`ParticleGibbs` correct it exactly.
    """
    return soft_bellman(mdp, horizon, factor * beta)


def _propose(key, parents, t, n_actions, log_proposal):
    """Actions (N,) for particles at states ``parents`` and their log q (None for the prior)."""
    if log_proposal is None:
        actions = random.randint(key, parents.shape, 0, n_actions, jnp.int32)
        return actions, None
    log_q = log_proposal[t][parents]
    actions = random.categorical(key, log_q).astype(jnp.int32)
    return actions, log_q


def _log_q_of(log_q, actions):
    return jnp.take_along_axis(log_q, actions[:, None], axis=-1)[:, 0]


def _ancestor_twist(values, t, states):
    """``-psi_t(s)`` for the ancestor weights (0 at t = 0 and for prior proposals)."""
    if values is None:
        return 0.0
    return -jnp.where(t > 0, values[t][states], 0.0)


def build_kernel(world, horizon, num_particles=256, proposal=None, log_factor=None):
    """One conditional SMC sweep with ancestor sampling, ``step(key, state, beta)``.

    ``state`` is a :class:`~pgm_rl.kernels.base.RegenerationState` (the reference). The
    particles draw their starts, actions and outcome indices from the prior (the actions from
    ``proposal`` if given). The info's ``accept_prob`` is 1.0 when the sampled trajectory
    differs from the reference.

    Parameters
    ----------
    world : TabularMDP
    horizon : int
    num_particles : int, default 256
        N >= 2, the reference included.
    proposal : optional
        A (T, S, A) array of probabilities or an object with ``.log_policy`` (T, S, A) (see
        :func:`pgm_rl.particles.check_proposal`); None for the uniform prior.
    log_factor : TrajectoryFactor, optional
        The model's extra terms f (module docstring).
    """
    num_particles = _check_num_particles(num_particles)
    log_proposal = (
        None if proposal is None else jnp.asarray(check_proposal(proposal, world, horizon))
    )
    out_states = jnp.asarray(world.outcome_states)
    out_probs = jnp.asarray(world.outcome_probs)
    out_rewards = jnp.asarray(world.outcome_rewards)
    ref_index = num_particles - 1

    time = jnp.arange(horizon)
    dtype = out_rewards.dtype

    def joined_factor(beta, t, starts, paths, ref, ref_outcomes):
        """Weighted f (N,) of each particle's prefix before step t joined to the reference's
        steps from t on (:func:`factor_at` vmapped)."""
        actions = jnp.where(time < t, paths[0], ref)
        outcomes = jnp.where(time < t, paths[1], ref_outcomes)
        values = jax.vmap(lambda *x: factor_at(log_factor, *x, dtype))(starts, actions, outcomes)
        return log_factor.weight(beta) * values

    def step(key, state, beta):
        ref, ref_outcomes = state.actions, state.outcomes
        values = log_values_to_go(world, ref, ref_outcomes, beta)  # (T + 1, S)
        psi = None if log_proposal is None else proposal_values(log_proposal, world, beta)
        start_key, sweep_key, pick_key = random.split(key, 3)
        s0 = draw_start(start_key, world, (num_particles,)).at[ref_index].set(state.start)
        log_w0 = jnp.zeros(num_particles, out_rewards.dtype)
        # The particles' paths (start, actions, outcome indices), carried only for f.
        paths0 = None
        if log_factor is not None:
            empty = jnp.zeros((num_particles, horizon), jnp.int32)
            paths0 = (s0, empty, empty)

        def forward(carry, inputs):
            states, log_w, paths = carry
            step_key, t, ref_action, ref_k = inputs
            resample_key, ancestor_key, action_key, outcome_key = random.split(step_key, 4)
            ancestors = multinomial_resample(resample_key, log_w, num_particles)
            ancestor_log_w = log_w + values[t, states] + _ancestor_twist(psi, t, states)
            if log_factor is not None:
                ancestor_log_w = ancestor_log_w + joined_factor(
                    beta, t, paths[0], paths[1:], ref, ref_outcomes
                )
            ref_ancestor = random.categorical(ancestor_key, ancestor_log_w)
            ancestors = ancestors.at[ref_index].set(ref_ancestor.astype(jnp.int32))
            parents = states[ancestors]
            actions, log_q = _propose(action_key, parents, t, world.n_actions, log_proposal)
            actions = actions.at[ref_index].set(ref_action)
            u = positive_uniform(outcome_key, (num_particles,), out_probs.dtype)
            cdf = jnp.cumsum(out_probs[parents, actions], axis=-1)
            outcomes = jnp.sum(cdf[:, :-1] < (u * cdf[:, -1])[:, None], axis=-1)
            outcomes = outcomes.astype(jnp.int32).at[ref_index].set(ref_k)
            new_log_w = beta * out_rewards[parents, actions, outcomes]
            entered = out_states[parents, actions, outcomes]
            if log_q is not None:
                new_log_w = new_log_w - _log_q_of(log_q, actions)
                new_log_w = new_log_w + twist(psi, t, parents, entered)
            if log_factor is not None:
                starts, path_actions, path_outcomes = (x[ancestors] for x in paths)
                paths = (
                    starts,
                    path_actions.at[:, t].set(actions),
                    path_outcomes.at[:, t].set(outcomes),
                )
            return (entered, new_log_w, paths), (ancestors, actions, outcomes)

        inputs = (random.split(sweep_key, horizon), time, ref, ref_outcomes)
        (_, log_w, paths), (ancestors, actions, outcomes) = lax.scan(
            forward, (s0, log_w0, paths0), inputs
        )
        if log_factor is not None:  # the terminal potential; the paths are the particles'
            log_w = log_w + joined_factor(beta, horizon, paths[0], paths[1:], ref, ref_outcomes)
            last = random.categorical(pick_key, log_w).astype(jnp.int32)
            start, path, path_outcomes = (x[last] for x in paths)
        else:

            def trace_back(index, step_arrays):
                step_ancestors, step_actions, step_outcomes = step_arrays
                return step_ancestors[index], (step_actions[index], step_outcomes[index])

            last = random.categorical(pick_key, log_w).astype(jnp.int32)
            first, (path, path_outcomes) = lax.scan(
                trace_back, last, (ancestors, actions, outcomes), reverse=True
            )
            start = s0[first]
        new_state = init_state(world, path, path_outcomes, start, log_factor)
        changed = jnp.any(path != ref) | jnp.any(path_outcomes != ref_outcomes)
        changed = changed | (start != state.start)
        return new_state, MHInfo(changed.astype(log_w.dtype), changed)

    return step


def _check_num_particles(num_particles):
    """``num_particles`` as an int >= 2, or a ``TypeError`` / ``ValueError`` naming it."""
    checked = check_positive_int(num_particles, "num_particles")
    if checked < 2:
        raise ValueError(f"num_particles must be an int >= 2, got {num_particles}")
    return checked


class ParticleGibbs(TrajectoryKernel):
    """Particle Gibbs with ancestor sampling: one conditional SMC sweep per MCMC step.

    Parameters
    ----------
    model : callable
        A model built on :func:`pgm_rl.trajectory_model`.
    num_particles : int, default 256
        Particles per sweep (>= 2), the reference included. Cost per step is
        O(num_particles * T); mixing improves with more particles.
    proposal : optional
        A proposal policy for the free particles: a (T, S, A) array of probabilities, an
        object with ``.log_policy`` (T, S, A) (``FittedPolicy``, ``SoftBellmanPolicy``,
        ``ExactPosterior``), or a callable ``(mdp, horizon, beta) -> one of those``, called
        when the kernel is built (e.g. :func:`soft_bellman_proposal`). Checked by
        :func:`pgm_rl.smc.check_proposal` (full support). The sampler stays exact whatever the
        proposal; a good one makes it mix where prior proposals find nothing (the notebook
        grid at T = 100).

    Notes
    -----
    ``accept_prob`` reports whether the sweep moved the trajectory (1.0) or returned the
    reference (0.0); its running mean is the update rate.
    """

    def __init__(self, model, num_particles=256, proposal=None):
        super().__init__(model)
        self.num_particles = _check_num_particles(num_particles)
        self.proposal = proposal

    def _builds_its_proposal(self):
        return callable(self.proposal) and not hasattr(self.proposal, "log_policy")

    def build_step_at(self, world, horizon, beta, log_factor=None):
        """The step at the model's beta: a callable proposal is built from it here."""
        proposal = self.proposal
        if self._builds_its_proposal():
            # Computed now, from the concrete world, even when the kernel is built inside a
            # jitted function (benchmarks/_runner.py): the proposal is a constant of the step.
            with jax.ensure_compile_time_eval():
                proposal = proposal(world, horizon, float(beta))
        return build_kernel(world, horizon, self.num_particles, proposal, log_factor)

    def build_step(self, world, horizon, log_factor=None):
        if self._builds_its_proposal():
            raise ValueError(
                "ParticleGibbs(proposal=<callable>) builds its proposal from the model's "
                "(mdp, horizon, beta) when MCMC builds the kernel; as a replica-exchange rung "
                "(several betas) pass a (T, S, A) proposal instead"
            )
        return build_kernel(world, horizon, self.num_particles, self.proposal, log_factor)


class GuidedParticleGibbs(ParticleGibbs):
    """:class:`ParticleGibbs` proposing from a policy built from the problem when MCMC builds it.

    ``proposal(mdp, horizon, beta)`` (None: :func:`soft_bellman_proposal`, soft Bellman at
    beta / 10) gives the (T, S, A) proposal; a policy given instead is used as it is. The
    registry's ``"guided-particle-gibbs"``. Not a replica-exchange rung (its proposal depends on
    the model's beta): use ``ParticleGibbs(model, proposal=array)`` there.
    """

    build_step = None  # not a rung: see the class docstring

    def __init__(self, model, num_particles=256, proposal=None):
        super().__init__(
            model, num_particles, soft_bellman_proposal if proposal is None else proposal
        )
