"""Policies run in the true dynamics: the soft-Bellman policy and the evaluation of any policy.

The soft-Bellman policy is the structured variational optimum (the dynamics and the start held
fixed); :func:`evaluate_policy` runs any (T, S, A) policy in the true dynamics and gives its
marginals, expected return and ELBO. The arithmetic is :func:`pgm_rl.messages.soft_backward` and
:func:`pgm_rl.messages.forward`.
"""

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import check_beta
from pgm_rl.exact.checkpointed import CheckpointedSoftBellman
from pgm_rl.exact.checks import check_policy, check_problem, placed_problem
from pgm_rl.exact.sharding import replicated, trim
from pgm_rl.exact.trajectories import TrajectoryDistribution, run_forward
from pgm_rl.messages import forward, soft_backward
from pgm_rl.worlds import check_env

__all__ = ["PolicyEvaluation", "SoftBellmanPolicy", "evaluate_policy", "soft_bellman"]


@dataclass(frozen=True, eq=False, repr=False)
class PolicyEvaluation(TrajectoryDistribution):
    """A (T, S, A) policy executed in the true dynamics from the true start distribution.

    A JAX pytree; ``horizon`` is static. Built by :func:`evaluate_policy`.

    Attributes
    ----------
    mdp : TabularMDP
    horizon : int
        T.
    beta : float
    log_policy : array, shape (T, S, A)
        log pi_t(a | s).
    state_marginals : array, shape (T + 1, S)
        Probability of being in state s at step t (step 0: the start distribution).
    action_marginals : array, shape (T, A)
    expected_return : float
        Expected sum of rewards (unscaled).
    elbo : float
        E_q[beta * return] - sum_t E_q[KL(pi_t(. | s_t) || uniform)], the evidence lower bound
        of the policy (<= log Z of :func:`~pgm_rl.exact.solve`; largest for the
        :func:`soft_bellman` policy).

    Methods (:class:`~pgm_rl.exact.trajectories.TrajectoryDistribution`): ``policy``,
    ``sample(key, n)``, ``log_prob(actions, states=None)``, ``path_probability(states)``,
    ``reach_probability(cells)``, all of the policy in the true dynamics.
    """

    mdp: object
    horizon: int
    beta: float
    log_policy: jax.Array
    state_marginals: jax.Array
    action_marginals: jax.Array
    expected_return: float
    elbo: float

    def __repr__(self):
        horizon, n_states, n_actions = np.shape(self.log_policy)
        return (
            f"{type(self).__name__}(mdp={self.mdp!r}, horizon={horizon}, beta={self.beta:g}, "
            f"elbo={float(self.elbo):.10g}, expected_return={float(self.expected_return):.6g}, "
            f"log_policy: ({horizon}, {n_states}, {n_actions}), state_marginals: "
            f"({horizon + 1}, {n_states}))"
        )


@dataclass(frozen=True, eq=False, repr=False)
class SoftBellmanPolicy(PolicyEvaluation):
    """The soft-Bellman (maximum-entropy) policy: the structured variational optimum.

    With the dynamics and the start distribution held fixed, it maximises
    ``E_q[beta * return] - sum_t E_q[KL(pi_t(. | s_t) || uniform)]`` over all (T, S, A) policies;
    ``elbo`` is that optimum (= log Z on deterministic MDPs with one start state, < log Z when
    the exact posterior would bend the dynamics). The marginals, return, samples and
    probabilities are those of the policy executed in the true dynamics. Same attributes and
    methods as :class:`PolicyEvaluation`.
    """


for _cls in (PolicyEvaluation, SoftBellmanPolicy):
    jax.tree_util.register_dataclass(
        _cls,
        data_fields=[
            "mdp",
            "beta",
            "log_policy",
            "state_marginals",
            "action_marginals",
            "expected_return",
            "elbo",
        ],
        meta_fields=["horizon"],
    )


def soft_bellman(env, horizon, beta, *, checkpoint=False, mesh=None):
    """The soft-Bellman policy: soft value iteration with the true dynamics.

    ``V_T = 0``, ``Q_t(s, a) = E_{s'}[beta r(s, a, s') + V_{t+1}(s')]``,
    ``V_t(s) = log mean_a exp Q_t(s, a)``, ``pi_t(a | s) = exp(Q_t(s, a) - V_t(s)) / A`` and
    ``elbo = E_{s_0}[V_0(s_0)]``. On a deterministic MDP its policy is bit for bit that of
    :func:`~pgm_rl.exact.solve`.

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.
    checkpoint : bool
        True: keep V only every ~sqrt(T) steps (:class:`~pgm_rl.exact.CheckpointedSoftBellman`,
        as in :func:`~pgm_rl.exact.solve`).
    mesh : jax.sharding.Mesh, optional
        With an axis ``"states"``: split over its devices as in :func:`~pgm_rl.exact.solve`.

    Returns
    -------
    SoftBellmanPolicy, or CheckpointedSoftBellman with ``checkpoint=True``
    """
    mdp, horizon, beta, checkpoint, dyn = placed_problem(env, horizon, beta, checkpoint, mesh)
    if checkpoint:
        return CheckpointedSoftBellman(mdp, horizon, beta, dyn)
    log_policy, (v_hi, v_lo) = soft_backward(*dyn.arrays, horizon)
    v_hi, v_lo = (np.asarray(v, np.float64)[: mdp.n_states] for v in replicated(dyn, v_hi, v_lo))
    p0 = np.asarray(mdp.start_probs, np.float64)
    support = p0 > 0
    elbo = math.fsum(
        (p0[support] * v_hi[support]).tolist() + (p0[support] * v_lo[support]).tolist()
    )
    evaluation = _evaluate(mdp, horizon, beta, log_policy, dyn)
    return SoftBellmanPolicy(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_policy=evaluation.log_policy,
        state_marginals=evaluation.state_marginals,
        action_marginals=evaluation.action_marginals,
        expected_return=evaluation.expected_return,
        elbo=elbo,
    )


def evaluate_policy(env, policy, beta):
    """Execute a (T, S, A) policy in the true dynamics: marginals, expected return, ELBO.

    Parameters
    ----------
    env : TabularMDP
    policy : array_like, shape (T, S, A)
        Action probabilities pi_t(a | s); every row ``policy[t, s]`` sums to 1 within 1e-6.
        E.g. ``solve(...).policy`` (to see what the optimistic posterior's policy achieves)
        or ``soft_bellman(...).policy``.
    beta : float
        Inverse temperature >= 0, for the ELBO.

    Returns
    -------
    PolicyEvaluation
    """
    mdp = check_env(env)
    beta = float(check_beta(beta))
    log_policy = check_policy(policy, mdp)
    horizon = log_policy.shape[0]
    check_problem(mdp, horizon, beta)
    return _evaluate(mdp, horizon, beta, log_policy)


def _evaluate(mdp, horizon, beta, log_policy, dyn=None):
    """The :class:`PolicyEvaluation` of a checked log policy (T, S, A); with ``dyn`` from
    :func:`~pgm_rl.exact.sharding.shard_dynamics`, of its padded (T, S', A) policy, trimmed."""
    result = PolicyEvaluation(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_policy=trim(dyn, log_policy),
        state_marginals=None,
        action_marginals=None,
        expected_return=None,
        elbo=None,
    )
    if getattr(dyn, "mesh", None) is None:
        marginals, actions, step_returns, step_kl, _ = run_forward(result, mdp.start_probs)
    else:  # the forward pass over the padded, sharded dynamics
        mu0 = jnp.exp(dyn.log_p0)
        zeros = np.zeros((horizon + 1, 1), mu0.dtype)
        no_absorb = np.zeros(mu0.shape, bool)
        marginals, actions, step_returns, step_kl, _ = forward(
            mu0, log_policy, *dyn.arrays, zeros, zeros, no_absorb, posterior=False
        )
        marginals = trim(dyn, marginals)
        actions, step_returns, step_kl = replicated(dyn, actions, step_returns, step_kl)
    expected_return = math.fsum(np.asarray(step_returns, np.float64).tolist())
    kl = math.fsum(np.asarray(step_kl, np.float64).tolist())
    return dataclasses.replace(
        result,
        state_marginals=marginals,
        action_marginals=actions,
        expected_return=expected_return,
        elbo=beta * expected_return - kl,
    )
