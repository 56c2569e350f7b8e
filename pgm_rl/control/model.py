"""The continuous control-as-inference trajectory posterior as a NumPyro model.

p(u, w | O = 1) ∝ N(u; 0, action_scale^2) N(w; 0, noise_scale^2) exp(beta * sum_t r_t)
"""

import numpyro
import numpyro.distributions as dist

from pgm_rl._checks import check_beta, check_horizon
from pgm_rl.control.problems import ControlProblem
from pgm_rl.model import Trajectory


def check_problem(problem):
    """Return ``problem`` or raise ``TypeError`` unless it is a :class:`ControlProblem`."""
    if not isinstance(problem, ControlProblem):
        raise TypeError(
            "problem must be a pgm_rl.control.ControlProblem (e.g. LinearQuadratic(...) or "
            f"pendulum()), got {type(problem).__name__}"
        )
    return problem


def control_model(problem, horizon, beta):
    """NumPyro model of optimal trajectories of a continuous control problem.

    Sites, in ``plate("time", T)``: ``"actions"`` (T, du) ~ Normal(0, action_scale) (the du axis
    an event); on a stochastic problem ``"noise"`` (T, dx) ~ Normal(0, noise_scale) (the
    optimistic posterior chooses the noise too, as it chooses the outcomes of a stochastic
    MDP); deterministic ``"states"`` (T + 1, dx) and ``"rewards"`` (T,); factor
    ``"optimality"`` = ``beta * sum(rewards)``. The ``"actions"`` site carries
    ``infer={"pgm_rl_control": {"problem", "horizon", "beta"}}`` for tools that read the model.

    Every latent is continuous, so NumPyro's NUTS, HMC, BarkerMH and SA (and any other
    continuous kernel) run it through ``MCMC``; a wrapper model may add ``numpyro.factor`` sites
    of the returned trajectory.

    Parameters
    ----------
    problem : ControlProblem
    horizon : int
        T, the number of actions.
    beta : float
        Inverse temperature, >= 0.

    Returns
    -------
    pgm_rl.model.Trajectory
        ``(actions (T, du), states (T + 1, dx), rewards (T,), outcomes)`` with ``outcomes`` the
        noise (T, dx), or None on a deterministic problem.
    """
    problem = check_problem(problem)
    horizon = check_horizon(horizon)
    beta = check_beta(beta)
    noise = None
    with numpyro.plate("time", horizon):
        actions = numpyro.sample(
            "actions",
            dist.Normal(0.0, problem.action_scale).to_event(1),
            infer={"pgm_rl_control": {"problem": problem, "horizon": horizon, "beta": beta}},
        )
        if problem.is_stochastic:
            noise = numpyro.sample("noise", dist.Normal(0.0, problem.noise_scale).to_event(1))
    states, rewards = problem.rollout(actions, noise)
    numpyro.deterministic("states", states)
    numpyro.deterministic("rewards", rewards)
    numpyro.factor("optimality", beta * rewards.sum(-1))
    return Trajectory(actions, states, rewards, noise)
