"""Variational policies for the trajectory posterior: NumPyro guides, fitted two ways.

A policy q(a_t | s_t) executed in the true dynamics is a variational family for
:func:`~pgm_rl.model.trajectory_model`. On a stochastic MDP the guide draws the start and the
outcomes from the true dynamics (structured variational inference, Levine 2018 section 3:
q(s' | s, a) = p(s' | s, a)), so its evidence lower bound is

    ELBO(pi) = E_pi[beta * return] - sum_t E_{s_t}[KL(pi_t(. | s_t) || uniform)]  <=  log Z,

the quantity :func:`~pgm_rl.exact.evaluate_policy` computes; its maximum over all (T, S, A)
policies is :func:`~pgm_rl.exact.soft_bellman`'s ``elbo`` (= log Z on deterministic MDPs with
one start state).

:func:`fit_policy` maximises it two ways:

- ``objective="score"``: ``numpyro.infer.SVI`` with ``TraceGraph_ELBO`` on
  ``trajectory_model`` and :func:`policy_guide` (the score-function estimator, i.e. REINFORCE:
  maximum-entropy policy gradient). Works for any model a user writes on top of the guide.
- ``objective="exact"``: the ELBO by a differentiable forward pass (zero-variance gradients),
  optimised with optax. By default the step is the NATURAL gradient (Kakade 2002): the
  gradient preconditioned by the Fisher information of the trajectory distribution. For a
  tabular softmax policy that Fisher is block diagonal, ``mu_t(s) (diag pi - pi pi^T)`` per
  (t, s), so the natural gradient of the time-indexed logits is the soft advantage
  ``Q^pi_t(s, a) - log pi_t(a | s) - log A - V^pi_t(s)`` of the policy itself (one backward
  soft policy evaluation), and a plain SGD step of size ``eta`` on it is mirror descent on the
  simplex: ``logits <- (1 - eta) logits + eta Q^pi`` (eta = 1 is soft policy iteration, exact
  in T steps). This is what makes the saturated softmax of the notebook grid trainable: the
  Euclidean gradient ``mu_t(s) pi (A^pi)`` vanishes where pi saturates or mu_t(s) is tiny, and
  plain Adam on the logits stalls there (0.43 nats at T = 20, beta = 0.05), whereas the natural
  gradient does not see the ``mu pi`` factor at all. For ``"stationary"`` logits the natural
  gradient is the occupancy-weighted mean advantage over t; for ``"features"`` it is the
  compatible-function-approximation least squares fit of the advantage (the (F A) x (F A)
  Fisher, singular by construction, solved by its pseudo-inverse: the minimum-norm fit, zero
  for zero features, sound in float32). ``natural_gradient=False`` gives the Euclidean
  gradient by ``jax.grad`` instead (with Adam by default).

A fit whose exact ELBO ends below its start (the uniform policy) or far below the best it
reached warns (``RuntimeWarning``, naming the optimizer): its step size is too large or of the
wrong sign, though no NaN appeared.

Modules: :mod:`pgm_rl.variational.guides` (the guide: :func:`policy_guide`,
:class:`PolicyGuide`), :mod:`pgm_rl.variational.elbo` (:class:`PolicyGradientELBO`, the exact
ELBO's natural and Euclidean gradients), :mod:`pgm_rl.variational.fit` (:func:`fit_policy`,
:func:`exact_runner`, :class:`FittedPolicy`), :mod:`pgm_rl.variational.samples`
(:func:`fit_policy_to_samples`). The soft-value recursions are
:func:`pgm_rl.messages.policy_values` and :func:`pgm_rl.messages.policy_elbo`.
"""

from pgm_rl.messages import policy_elbo
from pgm_rl.variational.elbo import PolicyGradientELBO
from pgm_rl.variational.fit import OBJECTIVES, FittedPolicy, exact_runner, fit_policy
from pgm_rl.variational.fit import _check_trace as _check_trace  # the CLI's chunked exact fit
from pgm_rl.variational.fit import _finish as _finish  # the CLI's chunked exact fit
from pgm_rl.variational.guides import PARAM_NAME, PARAMETRIZATIONS, PolicyGuide, policy_guide
from pgm_rl.variational.samples import fit_policy_to_samples

__all__ = [
    "OBJECTIVES",
    "PARAMETRIZATIONS",
    "PARAM_NAME",
    "FittedPolicy",
    "PolicyGradientELBO",
    "PolicyGuide",
    "exact_runner",
    "fit_policy",
    "fit_policy_to_samples",
    "policy_elbo",
    "policy_guide",
]
