"""The reference behind a run: what a correct sampler of a model would give.

:func:`reference` reads the target of a model built on :func:`pgm_rl.trajectory_model`
(:func:`pgm_rl.model.trajectory_target`). For the trajectory model itself the reference is the
exact posterior (:func:`pgm_rl.solve`). For a model that adds terms f(trajectory) (its
``numpyro.factor`` and observed sites) the target is ``p(trajectory | O) exp(f)``: the exact
posterior of the Markov part ``q = solve(world, T, beta)`` times ``exp(f)``, and the reference
is self-normalised importance sampling with ``q`` as the proposal:

- N iid draws ``x_i ~ q``, log weights ``f(x_i)`` (-inf, a hard constraint, is weight 0),
  normalised weights ``w_i = exp(f_i) / sum_j exp(f_j)``;
- Kish's effective sample size ``ESS = 1 / sum_i w_i^2`` (N when f is constant);
- ``log Z = log Z_q + log mean_i exp(f_i)`` (Z_q the Markov part's normaliser); its standard
  error by the delta method, ``sd(exp f) / (sqrt(N) mean(exp f)) = sqrt((N / ESS - 1) /
  (N - 1))``;
- every expectation ``sum_i w_i h(x_i)`` (state marginals, expected return) with the delta
  method's standard error ``sqrt(sum_i w_i^2 (h(x_i) - mean)^2)``.

It is consistent for any f, and its own noise is known from its ESS; when the factor pulls the
target far from the Markov part the ESS collapses and says so (see
:data:`MIN_REFERENCE_ESS` in :func:`pgm_rl.diagnostics.compare_to_reference`).
"""

import math
from dataclasses import dataclass

import jax
import numpy as np
import xarray as xr
from jax import random

from pgm_rl._checks import check_fits_in_memory, check_key, check_positive_int
from pgm_rl.exact import ExactPosterior, solve
from pgm_rl.model import trajectory_target

__all__ = ["DEFAULT_REFERENCE_SAMPLES", "Reference", "reference"]

# Draws of the Markov part's exact posterior behind an importance-sampling reference.
DEFAULT_REFERENCE_SAMPLES = 16384
# The factor is evaluated over the draws in batches of this many (bounds its memory).
_FACTOR_BATCH = 1024


@dataclass(frozen=True, eq=False)
class Reference:
    """The reference of a model: its exact posterior, or importance sampling (module docstring).

    Attributes
    ----------
    kind : str
        ``"exact"`` (the model is :func:`pgm_rl.trajectory_model` itself) or ``"importance"``.
    world : TabularMDP
    horizon : int
        T.
    beta : float
    log_z : float
        Log normaliser of the model (the estimate, for ``"importance"``).
    log_z_se : float
        Its standard error (0 for ``"exact"``).
    ess : float
        Kish's effective sample size of the weights (``inf`` for ``"exact"``).
    num_samples : int
        N, the number of draws (0 for ``"exact"``).
    state_marginals : array, shape (T + 1, S)
        P(s_t = s) under the model (exact, or weighted).
    state_marginals_se : array, shape (T + 1, S)
        Their standard errors (0 for ``"exact"``).
    expected_return : float
        E[sum of rewards] under the model.
    expected_return_se : float
        Its standard error (0 for ``"exact"``).
    return_sd : float
        The weighted standard deviation of the return (NaN for ``"exact"``: not needed there).
    posterior : ExactPosterior
        The exact posterior of the Markov part (the model itself for ``"exact"``; the proposal
        for ``"importance"``).
    sites : tuple of str
        The model's extra sites that make up f (empty for ``"exact"``).
    samples : dict or None
        ``"start"`` (N,), ``"actions"`` (N, T), ``"outcomes"`` (N, T) (outcome indices, 0 on
        deterministic dynamics), ``"states"`` (N, T + 1), ``"rewards"`` (N, T): the draws of
        the proposal; None for ``"exact"``.
    log_weights : array, shape (N,), or None
        f of each draw (unnormalised log weights; -inf where a hard constraint excludes it).
    """

    kind: str
    world: object
    horizon: int
    beta: float
    log_z: float
    log_z_se: float
    ess: float
    num_samples: int
    state_marginals: np.ndarray
    state_marginals_se: np.ndarray
    expected_return: float
    expected_return_se: float
    return_sd: float
    posterior: ExactPosterior
    sites: tuple = ()
    samples: dict | None = None
    log_weights: np.ndarray | None = None

    @classmethod
    def from_posterior(cls, posterior):
        """The ``"exact"`` reference of an :class:`ExactPosterior` (of the trajectory model)."""
        if not isinstance(posterior, ExactPosterior):
            raise TypeError(
                f"posterior must be a pgm_rl.ExactPosterior, got {type(posterior).__name__}"
            )
        marginals = np.asarray(posterior.state_marginals, dtype=float)
        return cls(
            kind="exact",
            world=posterior.mdp,
            horizon=posterior.horizon,
            beta=float(posterior.beta),
            log_z=float(posterior.log_z),
            log_z_se=0.0,
            ess=math.inf,
            num_samples=0,
            state_marginals=marginals,
            state_marginals_se=np.zeros_like(marginals),
            expected_return=float(posterior.expected_return),
            expected_return_se=0.0,
            return_sd=math.nan,
            posterior=posterior,
        )

    def __repr__(self):
        return f"Reference({self.describe()})"

    def describe(self):
        """One line: the kind, log Z and E[return] (with their SEs and the ESS for importance)."""
        if self.kind == "exact":
            return (
                f"exact posterior (T={self.horizon}, beta={self.beta:g}): log Z = "
                f"{self.log_z:.6g}, E[return] = {self.expected_return:.6g}"
            )
        return (
            f"importance sampling of the model's site(s) {', '.join(self.sites)} on the exact "
            f"posterior of its Markov part (T={self.horizon}, beta={self.beta:g}): ESS "
            f"{self.ess:.0f} of {self.num_samples}, log Z = {self.log_z:.6g} ± "
            f"{self.log_z_se:.2g}, E[return] = {self.expected_return:.6g} ± "
            f"{self.expected_return_se:.2g}"
        )

    def sample(self, key, num_samples):
        """Draw trajectories from the reference.

        ``"exact"``: iid exact draws (:meth:`ExactPosterior.sample`). ``"importance"``:
        ``num_samples`` draws with replacement from the weighted draws (multinomial,
        probabilities the normalised weights): they repeat, and carry at most about ``ess``
        draws' worth of information.

        Parameters
        ----------
        key : jax PRNG key
        num_samples : int

        Returns
        -------
        dict
            ``"actions"`` (n, T), ``"states"`` (n, T + 1), ``"rewards"`` (n, T), as
            :meth:`ExactPosterior.sample` (a dict :func:`to_datatree` takes).
        """
        check_key(key)
        num_samples = check_positive_int(num_samples, "num_samples")
        if self.kind == "exact":
            return self.posterior.sample(key, num_samples)
        picks = np.asarray(random.categorical(key, self.log_weights, shape=(num_samples,)))
        return {name: self.samples[name][picks] for name in ("actions", "states", "rewards")}

    def to_dataset(self):
        """The ``reference`` group of :func:`pgm_rl.diagnostics.to_datatree`.

        Returns
        -------
        xarray.Dataset
            ``state_marginals`` and ``state_marginals_se`` (step = 0..T, state), scalars
            ``log_z``, ``log_z_se``, ``ess``, ``num_samples``, ``expected_return``,
            ``expected_return_se``, ``return_sd``, ``markov_log_z`` (the Markov part's); attrs
            ``kind`` and ``sites`` (comma-separated).
        """
        steps, states = np.shape(self.state_marginals)
        return xr.Dataset(
            {
                "state_marginals": (("step", "state"), np.asarray(self.state_marginals)),
                "state_marginals_se": (("step", "state"), np.asarray(self.state_marginals_se)),
                "log_z": float(self.log_z),
                "log_z_se": float(self.log_z_se),
                "ess": float(self.ess),
                "num_samples": int(self.num_samples),
                "expected_return": float(self.expected_return),
                "expected_return_se": float(self.expected_return_se),
                "return_sd": float(self.return_sd),
                "markov_log_z": float(self.posterior.log_z),
            },
            coords={"step": np.arange(steps), "state": np.arange(states)},
            attrs={"kind": self.kind, "sites": ",".join(self.sites)},
        )


def reference(model, *model_args, num_samples=DEFAULT_REFERENCE_SAMPLES, key=None, **model_kwargs):
    """The reference of a model built on :func:`pgm_rl.trajectory_model` (module docstring).

    Parameters
    ----------
    model : callable
        :func:`pgm_rl.trajectory_model`, or a model that calls it and adds terms of the
        trajectory (``numpyro.factor`` / observed / deterministic sites).
    *model_args, **model_kwargs
        The model's arguments, as given to ``MCMC.run`` (e.g. ``env, horizon, beta``).
    num_samples : int, default 16384
        N, draws of the Markov part's exact posterior (only with extra terms).
    key : jax PRNG key, optional
        Key of the draws; default ``jax.random.key(0)`` (same model, same reference).

    Returns
    -------
    Reference
        ``kind="exact"`` for the trajectory model itself, else ``"importance"``.

    Raises
    ------
    ValueError
        The model is not built on :func:`pgm_rl.trajectory_model` or has other latent sites
        (:func:`pgm_rl.model.trajectory_target`); a term is NaN or +inf on a drawn trajectory
        (naming the site and the trajectory); every draw has f = -inf; the N draws do not fit
        in memory.
    TypeError
        ``model`` is not callable, ``key`` is not a PRNG key, ``num_samples`` is not an int.
    """
    if not callable(model):
        raise TypeError(f"model must be a callable NumPyro model, got {type(model).__name__}")
    num_samples = check_positive_int(num_samples, "num_samples")
    if num_samples < 2:
        raise ValueError(
            f"num_samples must be an int >= 2 (the standard errors need two), got {num_samples}"
        )
    key = random.key(0) if key is None else check_key(key)
    target = trajectory_target(model, model_args, model_kwargs, "pgm_rl.diagnostics.reference")
    world, horizon, beta = target.world, target.horizon, float(target.beta)
    posterior = solve(world, horizon, beta)
    if target.factor is None:
        return Reference.from_posterior(posterior)
    check_fits_in_memory(
        8 * num_samples * (4 * horizon + 2) + 8 * num_samples * (horizon + 1) * world.n_states,
        "num_samples",
        num_samples,
        f"{num_samples} reference draws of horizon {horizon}",
        "use fewer num_samples",
    )
    draw_key, tie_key = random.split(key)
    draws = {
        name: np.asarray(value) for name, value in posterior.sample(draw_key, num_samples).items()
    }
    draws["start"] = draws["states"][:, 0]
    draws["outcomes"] = _outcome_indices(world, draws, tie_key)
    log_weights = _factor_values(target.factor, draws)
    return _weighted_reference(
        world, horizon, beta, posterior, target.factor.sites, draws, log_weights
    )


def _outcome_indices(world, draws, key):
    """The outcome index of each drawn step, (N, T) int32.

    :meth:`ExactPosterior.sample` gives the states and rewards; the index is the outcome of
    ``(s_t, a_t)`` entering ``s_{t+1}`` with reward ``r_t``. Where several outcomes match (equal
    next state and reward: only a world that does not merge them has such), the posterior
    chooses among them in proportion to their prior probabilities (their messages are equal),
    so one is drawn so (``key``).
    """
    if world.n_outcomes == 1:
        return np.zeros_like(draws["actions"], dtype=np.int32)
    out_states = np.asarray(world.outcome_states)
    out_probs = np.asarray(world.outcome_probs)
    out_rewards = np.asarray(world.outcome_rewards)
    s, a = draws["states"][:, :-1], draws["actions"]
    scale = max(1.0, float(np.abs(out_rewards).max()))
    match = (
        (out_states[s, a] == draws["states"][:, 1:, None])
        & (out_probs[s, a] > 0)
        & np.isclose(out_rewards[s, a], draws["rewards"][..., None], rtol=1e-6, atol=1e-6 * scale)
    )
    with np.errstate(divide="ignore"):
        logits = np.where(match, np.log(out_probs[s, a]), -np.inf)
    return np.asarray(random.categorical(key, logits), dtype=np.int32)


def _factor_values(factor, draws):
    """f of each draw, (N,) float64, checked: ``ValueError`` naming the site and the trajectory
    where a term is NaN or +inf."""
    inputs = (draws["start"], draws["actions"], draws["outcomes"])
    batch = min(_FACTOR_BATCH, draws["actions"].shape[0])

    @jax.jit
    def evaluate(start, actions, outcomes):
        return jax.lax.map(
            lambda x: factor.site_values(*x), (start, actions, outcomes), batch_size=batch
        )

    values = {name: np.asarray(value, dtype=float) for name, value in evaluate(*inputs).items()}
    for name, value in values.items():
        bad = np.flatnonzero(np.isnan(value) | (value == np.inf))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"the model's site {name!r} is {float(value[i])} for the trajectory with start "
                f"{int(draws['start'][i])}, actions {draws['actions'][i].tolist()} and outcomes "
                f"{draws['outcomes'][i].tolist()}; a term of the trajectory must be finite or "
                "-inf (a hard constraint)"
            )
    return sum(values.values())


def _weighted_reference(world, horizon, beta, posterior, sites, draws, log_weights):
    """The importance-sampling :class:`Reference` of the draws and their log weights f."""
    num_samples = log_weights.shape[0]
    if not np.isfinite(log_weights).any():
        raise ValueError(
            f"every one of the {num_samples} trajectories drawn from the exact posterior of the "
            f"model's Markov part has f = -inf (sites {', '.join(sites)}): its hard constraints "
            "exclude them all, so importance sampling cannot weigh them; draw more num_samples, "
            "or express the constraint in the world (e.g. as a product MDP) so that solve sees it"
        )
    top = log_weights.max()
    raw = np.exp(log_weights - top)
    total = raw.sum()
    weights = raw / total
    sum_sq = float((weights**2).sum())
    ess = 1.0 / sum_sq
    log_z = float(posterior.log_z) + float(top + np.log(total) - np.log(num_samples))
    log_z_se = math.sqrt(max(num_samples / ess - 1.0, 0.0) / (num_samples - 1))
    marginals, second = (
        _weighted_counts(draws["states"], w, world.n_states) for w in (weights, weights**2)
    )
    variance = second * (1.0 - 2.0 * marginals) + marginals**2 * sum_sq
    returns = draws["rewards"].sum(axis=-1).astype(float)
    mean_return = float(weights @ returns)
    deviation = returns - mean_return
    return Reference(
        kind="importance",
        world=world,
        horizon=horizon,
        beta=beta,
        log_z=log_z,
        log_z_se=log_z_se,
        ess=ess,
        num_samples=num_samples,
        state_marginals=marginals,
        state_marginals_se=np.sqrt(np.maximum(variance, 0.0)),
        expected_return=mean_return,
        expected_return_se=float(np.sqrt((weights**2) @ deviation**2)),
        return_sd=float(np.sqrt(weights @ deviation**2)),
        posterior=posterior,
        sites=tuple(sites),
        samples=draws,
        log_weights=log_weights,
    )


def _weighted_counts(states, weights, n_states):
    """``sum_i weights_i 1[states_i[t] == s]``, (T + 1, S), from states (N, T + 1)."""
    steps = states.shape[1]
    cells = np.arange(steps) * n_states + states
    counts = np.bincount(
        cells.ravel(), weights=np.repeat(weights, steps), minlength=steps * n_states
    )
    return counts.reshape(steps, n_states)
