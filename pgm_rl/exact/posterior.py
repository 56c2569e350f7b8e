"""The exact trajectory posterior by backward messages (soft value iteration over outcomes).

With a uniform prior over A actions and likelihood exp(beta * r), the backward messages are

    V_T(s) = 0,   Q_t(s, a) = log E_k exp(beta r(s, a, k) + V_{t+1}(s'_k)),
    V_t(s) = logsumexp_a Q_t(s, a) - log A,   log Z = logsumexp_s (log p0(s) + V_0(s)),

and the posterior policy is pi_t(a | s) = exp(Q_t(s, a) - log A - V_t(s)); on a deterministic
MDP (K = 1, one start) Q_t = beta r(s, a) + V_{t+1}(s'(s, a)) and log Z = V_0(s_0). The
arithmetic (double-word values, exact at beta * reward ~ 1e8 in float64, ~1e-6 in float32) is
:func:`pgm_rl.messages.posterior_backward` and :func:`pgm_rl.messages.forward`.
"""

import math
from dataclasses import dataclass

import jax
import numpy as np

from pgm_rl.exact.checkpointed import CheckpointedPosterior
from pgm_rl.exact.checks import placed_problem
from pgm_rl.exact.sharding import replicated, trim
from pgm_rl.exact.trajectories import TrajectoryDistribution
from pgm_rl.messages import forward, posterior_backward, start_posterior

__all__ = ["ExactPosterior", "solve"]


@dataclass(frozen=True, eq=False, repr=False)
class ExactPosterior(TrajectoryDistribution):
    """The exact trajectory posterior of one problem (a JAX pytree; ``horizon`` is static).

    Attributes
    ----------
    mdp : TabularMDP
    horizon : int
        T.
    beta : float
    log_z : float
        Log normaliser, log E_prior[exp(beta * sum of rewards)].
    log_policy : array, shape (T, S, A)
        Log posterior action probabilities log pi_t(a | s).
    state_marginals : array, shape (T + 1, S)
        Posterior probability of being in state s at step t (step 0 is the start).
    action_marginals : array, shape (T, A)
        Posterior probability of taking action a at time t.
    expected_return : float
        Posterior expectation of the sum of rewards (unscaled by beta).
    messages : tuple of two arrays, shape (T + 1, S)
        The backward messages V_t(s) = log p(O_t.. | s_t = s) as a double-word pair (hi, lo);
        the posterior over outcomes, q_t(s' | s, a) ∝ p(s' | s, a) exp(beta r(s, a, s') +
        V_{t+1}(s')), is recomputed from them (trivially the one outcome on a deterministic MDP).

    On an MDP with random dynamics or start this is the posterior over the whole trajectory:
    start state, actions and next states. It plans as if luck were on its side (Levine 2018,
    section 2.4): compare ``expected_return`` with
    ``evaluate_policy(env, posterior.policy, beta).expected_return`` and with
    :func:`~pgm_rl.exact.soft_bellman`.

    Methods (:class:`~pgm_rl.exact.trajectories.TrajectoryDistribution`): ``policy``,
    ``sample(key, n)``, ``log_prob(actions, states=None)``, ``path_probability(states)``,
    ``reach_probability(cells)``, all of the posterior (start and outcomes drawn from it too).
    """

    mdp: object
    horizon: int
    beta: float
    log_z: float
    log_policy: jax.Array
    state_marginals: jax.Array
    action_marginals: jax.Array
    expected_return: float
    messages: object = None

    def __repr__(self):
        horizon, n_states, n_actions = np.shape(self.log_policy)
        return (
            f"ExactPosterior(mdp={self.mdp!r}, horizon={horizon}, beta={self.beta:g}, "
            f"log_z={float(self.log_z):.10g}, expected_return={float(self.expected_return):.6g}, "
            f"log_policy: ({horizon}, {n_states}, {n_actions}), state_marginals: "
            f"({horizon + 1}, {n_states}), action_marginals: ({horizon}, {n_actions}))"
        )

    def start_distribution(self):
        """The posterior distribution of s_0, (S,)."""
        return self.state_marginals[0]

    def outcome_messages(self):
        """The backward messages ``(v_hi, v_lo)`` that bend the outcomes."""
        return self.messages


jax.tree_util.register_dataclass(
    ExactPosterior,
    data_fields=[
        "mdp",
        "beta",
        "log_z",
        "log_policy",
        "state_marginals",
        "action_marginals",
        "expected_return",
        "messages",
    ],
    meta_fields=["horizon"],
)


def solve(env, horizon, beta, *, checkpoint=False, mesh=None):
    """Solve the trajectory posterior exactly.

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.
    checkpoint : bool
        True: keep V only every ~sqrt(T) steps and recompute the rest on demand
        (:class:`~pgm_rl.exact.CheckpointedPosterior`: memory O(S (sqrt(T) + A K)) instead of
        the (T, S, A) policy).
    mesh : jax.sharding.Mesh, optional
        With an axis ``"states"`` (:func:`~pgm_rl.exact.states_mesh`): the dynamics, the messages
        and the policy are split over its devices (:mod:`pgm_rl.exact.sharding`); the results
        equal the single-device ones and are trimmed back to S states. ``log_z`` and
        ``expected_return`` are floats on every process; under ``jax.distributed`` the array
        attributes are global arrays (read them with
        ``jax.experimental.multihost_utils.process_allgather``).

    Returns
    -------
    ExactPosterior, or CheckpointedPosterior with ``checkpoint=True``

    Raises
    ------
    ValueError
        If the (T, S, A) arrays would not fit in memory, or ``beta * max |reward|`` or a
        horizon's total overflows the working dtype (float32 unless ``jax_enable_x64``;
        the message says when float64 would hold it).
    """
    mdp, horizon, beta, checkpoint, dyn = placed_problem(env, horizon, beta, checkpoint, mesh)
    if checkpoint:
        return CheckpointedPosterior(mdp, horizon, beta, dyn)
    log_policy, (v_hi, v_lo) = posterior_backward(*dyn.arrays, horizon)
    (z_hi, z_lo), mu0 = start_posterior(dyn.log_p0, v_hi, v_lo)
    marginals, actions, step_returns, _, _ = forward(
        mu0, log_policy, *dyn.arrays, v_hi, v_lo, None, posterior=True, kl=False
    )
    z_hi, z_lo, actions, step_returns = replicated(dyn, z_hi, z_lo, actions, step_returns)
    return ExactPosterior(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_z=float(z_hi) + float(z_lo),
        log_policy=trim(dyn, log_policy),
        state_marginals=trim(dyn, marginals),
        action_marginals=actions,
        expected_return=math.fsum(np.asarray(step_returns, np.float64).tolist()),
        messages=(trim(dyn, v_hi), trim(dyn, v_lo)),
    )
