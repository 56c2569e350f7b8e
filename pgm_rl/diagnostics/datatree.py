"""From samples to the ArviZ DataTree of :mod:`pgm_rl.diagnostics` (its layout), and back.

:func:`to_datatree` converts an MCMC run, a dict of draws or weighted draws (SMC);
:func:`env_from_datatree` rebuilds the environment a tree stores, :func:`trajectory_states` the
whole paths (the start included) and :func:`best_state` names the goal.
"""

import jax
import numpy as np
import xarray as xr
from arviz_base import from_dict, from_numpyro
from numpyro.infer import MCMC

from pgm_rl._checks import check_beta, check_horizon, check_key, check_tree_fits
from pgm_rl.control import ControlProblem
from pgm_rl.diagnostics._numpyro import restore_numpyro_initialization
from pgm_rl.diagnostics.continuous import control_datatree
from pgm_rl.diagnostics.reference import DEFAULT_REFERENCE_SAMPLES, Reference, reference
from pgm_rl.diagnostics.schema import (
    OUTCOME_NAMES,
    RunError,
    best_outcome,
    check_steps,
    stored_outcomes,
)
from pgm_rl.dynamics import rollout
from pgm_rl.exact import ExactPosterior, solve
from pgm_rl.model import trajectory_target
from pgm_rl.smc import resample_draws
from pgm_rl.worlds import GridWorld, TabularMDP, check_env

__all__ = [
    "DIMS",
    "SAMPLE_DIMS",
    "best_state",
    "env_from_datatree",
    "to_datatree",
    "trajectory_states",
    "tree_group",
]

DIMS = {"actions": ["time"], "states": ["step"], "rewards": ["time"]}
SAMPLE_DIMS = ["chain", "draw"]
# Kernel state fields (NumPyro extra_fields) -> sample_stats names.
_STAT_NAMES = {"accept_prob": "acceptance_rate", "diverging": "diverging"}
# Where the steps of a dict of draws are checked against, for the messages.
_DYNAMICS = "the MDP's outcome_states and outcome_rewards"


def to_datatree(
    source,
    env,
    exact=None,
    *,
    horizon=None,
    beta=None,
    key=None,
    reference=True,
    reference_samples=DEFAULT_REFERENCE_SAMPLES,
    reference_key=None,
):
    """Convert sampled trajectories to an ArviZ DataTree (layout: :mod:`pgm_rl.diagnostics`).

    Parameters
    ----------
    source : numpyro.infer.MCMC, dict or SMCResult
        A finished ``MCMC`` run on :func:`pgm_rl.trajectory_model` (any kernel; its
        ``extra_fields`` such as ``"accept_prob"`` or ``"hmc_state.accept_prob"`` become
        ``sample_stats``), or a dict of draws with ``"actions"`` of shape (n, T) (one chain,
        e.g. :meth:`ExactPosterior.sample`) or (chains, draws, T); ``"states"`` and
        ``"rewards"`` are recomputed from the actions when absent (and checked when given).
        Weighted draws (a dict with ``"log_weights"`` (n,), or a :class:`pgm_rl.SMCResult`)
        are resampled: n draws with replacement (multinomial, probabilities
        ``softmax(log_weights)``) make one equally weighted chain. Repeated draws of one
        particle are not independent: ESS and R-hat of such a chain overstate its information.
    env : TabularMDP or pgm_rl.control.ControlProblem
        The environment the draws come from (the one the MCMC model was run on), with a
        single start state (a one-hot ``start_probs``): the layout stores the start as the
        ``start_state`` attribute. On stochastic dynamics (more than one outcome per step) a
        dict of draws must hold the ``"states"`` and ``"rewards"``: the actions alone do not
        fix them. A continuous problem's run (``control_model``, MPPI, SMC or draws) goes to
        :func:`control_datatree` (``beta`` and ``key`` passed on).
    exact : ExactPosterior, optional
        Stored in the ``exact`` group; must be for the same problem (of
        :func:`pgm_rl.trajectory_model` itself: a model with extra terms has a ``reference``).
    horizon, beta : optional
        Only for a dict ``source``: ``horizon`` is checked against the draws, ``beta`` is
        required unless ``exact`` gives it (an ``SMCResult`` does not record it either).
        Read from the model for an ``MCMC``.
    key : jax PRNG key, optional
        Only for weighted draws: the key of the resampling; default ``jax.random.key(0)`` (so
        the same input always gives the same tree).
    reference : bool or Reference, default True
        The model's reference, which :func:`problems` and :func:`compare_to_reference` judge
        the run by. True: for an ``MCMC`` source, computed from its model
        (:func:`pgm_rl.diagnostics.reference`): the exact posterior of
        :func:`pgm_rl.trajectory_model` itself goes to the ``exact`` group (unless ``exact``
        is given), the importance-sampling reference of a model with extra terms to the
        ``reference`` group; a dict source has no model, so nothing is added. A
        :class:`Reference` is stored as it is (checked against the run's problem). False: no
        reference (for problems too large to solve: it costs a :func:`pgm_rl.solve` and, with
        extra terms, ``reference_samples`` evaluations of them).
    reference_samples : int, default 16384
        Draws of the importance-sampling reference (a model with extra terms).
    reference_key : jax PRNG key, optional
        Their key; default ``jax.random.key(0)``.

    Returns
    -------
    xarray.DataTree
    """
    if isinstance(env, ControlProblem):  # continuous actions: pgm_rl.control
        if exact is not None:
            raise TypeError(
                "exact is for tabular worlds; compare a continuous run with "
                "compare_to_reference(dt, solve_lq(...))"
            )
        return control_datatree(source, env, beta=beta, key=key)
    mdp = check_env(env)
    check_tree_fits(source)  # its copy of the draws fits in memory, before making it
    start = _single_start(mdp)
    if isinstance(source, MCMC):
        if horizon is not None or beta is not None or key is not None:
            raise TypeError(
                "horizon, beta and key are read from the MCMC run; pass them only with a dict"
            )
        dt, horizon, beta, target = _from_mcmc(source, mdp)
        if target.factor is not None and exact is not None:
            raise ValueError(
                "exact is the posterior of pgm_rl.trajectory_model alone, but the model adds the "
                f"site(s) {', '.join(map(repr, target.factor.sites))}: its reference is "
                "pgm_rl.diagnostics.reference(model, ...) (reference=True, the default)"
            )
        if reference is True and (target.factor is not None or exact is None):
            reference = _model_reference(source, target, reference_samples, reference_key)
        sites = () if target.factor is None else tuple(target.factor.sites)
        if isinstance(reference, Reference) and tuple(reference.sites) != sites:
            raise ValueError(
                f"reference is for a model with the extra site(s) {list(reference.sites)}, the "
                f"run's model has {list(sites)}"
            )
    elif isinstance(source, dict) or hasattr(source, "_asdict"):
        if reference_key is not None or reference_samples != DEFAULT_REFERENCE_SAMPLES:
            raise TypeError(
                "reference_samples and reference_key are for the reference of an MCMC run's "
                "model; a dict of draws has none (pass reference=pgm_rl.diagnostics.reference("
                "model, ...))"
            )
        sampler = type(source).__name__ if hasattr(source, "_asdict") else "samples"
        source = dict(source._asdict()) if hasattr(source, "_asdict") else source
        if "log_weights" in source:
            source = _resample_weighted(source, key)
            sampler = (
                f"{sampler}, resampled" if sampler != "samples" else "weighted samples, resampled"
            )
        elif key is not None:
            raise TypeError("key is only used to resample weighted draws (with log_weights)")
        dt, horizon, beta = _from_samples(source, mdp, start, exact, horizon, beta)
        dt.attrs["sampler"] = sampler
    else:
        raise TypeError(
            "source must be a numpyro.infer.MCMC, a dict of draws or an SMCResult, got "
            f"{type(source).__name__}"
        )
    dt["posterior"]["return"] = dt["posterior"]["rewards"].sum("time")
    dt["constant_data"] = xr.Dataset(
        _env_data(mdp),
        coords={"state": np.arange(mdp.n_states), "action": np.arange(mdp.n_actions)},
    )
    dt.attrs.update(
        horizon=int(horizon),
        beta=float(beta),
        start_state=start,
        best_state=best_state(mdp),
    )
    if isinstance(mdp, GridWorld):
        dt.attrs.update(start_row=int(mdp.start[0]), start_col=int(mdp.start[1]))
        if mdp.slip or mdp.terminal:
            cells = [int(index) for cell in mdp.terminal for index in cell]
            dt.attrs.update(slip=float(mdp.slip), terminal=cells)
    if isinstance(reference, Reference):
        _check_reference(reference, mdp, horizon, beta)
        if reference.kind == "exact":
            exact = reference.posterior if exact is None else exact
        else:
            dt["reference"] = reference.to_dataset()
    elif not isinstance(reference, bool):
        raise TypeError(
            f"reference must be True, False or a pgm_rl.diagnostics.Reference, got {reference!r}"
        )
    if exact is not None:
        dt["exact"] = _exact_dataset(exact, mdp, horizon, beta)
    return dt


def _model_reference(mcmc, target, num_samples, key):
    """The reference of the MCMC run's model: :func:`reference` (the exact posterior alone,
    without drawing, when the model adds no terms)."""
    try:
        if target.factor is None:
            return Reference.from_posterior(solve(target.world, target.horizon, float(target.beta)))
        return reference(
            mcmc.sampler.model, *mcmc._args, num_samples=num_samples, key=key, **mcmc._kwargs
        )
    except ValueError as error:
        raise ValueError(
            f"the run's reference (reference=True, the default): {error}; pass reference=False "
            "to store the run without it"
        ) from None


def _check_reference(ref, mdp, horizon, beta):
    """``ValueError`` unless ``ref`` is for the run's MDP, horizon and beta."""
    _check_same_mdp(ref.world, mdp)
    if ref.horizon != horizon or not np.isclose(ref.beta, beta, rtol=1e-12, atol=0.0):
        raise ValueError(
            f"reference is for horizon={ref.horizon}, beta={ref.beta}; the draws are for "
            f"horizon={horizon}, beta={beta}"
        )


def _single_start(mdp):
    """The start state of ``mdp``; ``ValueError`` unless its ``start_probs`` is one-hot."""
    start_probs = np.asarray(mdp.start_probs)
    if np.count_nonzero(start_probs) != 1:
        raise ValueError(
            "to_datatree stores runs on MDPs with a single start state only: with a random start "
            "the start is a posterior quantity that this layout (start_state attribute) cannot "
            "hold yet"
        )
    return int(np.argmax(start_probs))


def _resample_weighted(samples, key):
    key = jax.random.key(0) if key is None else check_key(key)
    log_weights = np.asarray(samples["log_weights"], dtype=float)
    if log_weights.ndim != 1:
        raise ValueError(f"source['log_weights'] must have shape (n,), got {log_weights.shape}")
    draws = {name: samples[name] for name in ("actions", "states", "rewards") if name in samples}
    if "actions" not in draws:
        raise ValueError(f"source must hold 'actions' draws, got keys {sorted(samples)}")
    if log_weights.shape[0] == 0:
        raise ValueError("source holds no draws (empty log_weights): at least one is needed")
    return resample_draws(key, draws, log_weights, log_weights.shape[0])


def _from_mcmc(mcmc, mdp):
    model = mcmc.sampler.model
    target = trajectory_target(model, mcmc._args, mcmc._kwargs, "to_datatree")
    problem_mdp, horizon, beta = target.world, target.horizon, target.beta
    _check_same_mdp(problem_mdp, mdp)
    restore_numpyro_initialization()
    dt = from_numpyro(mcmc, dims=DIMS)
    keep = [name for name in ("posterior", "sample_stats") if name in dt.children]
    dt = xr.DataTree.from_dict({name: dt[name].to_dataset() for name in keep})
    posterior = dt["posterior"].to_dataset()[["actions", "states", "rewards"]]
    dt["posterior"] = posterior.isel(step=slice(1, None))
    if "sample_stats" in dt.children:
        stats = dt["sample_stats"].to_dataset()
        renamed = {}
        for name in stats.data_vars:
            field = name.rsplit(".", 1)[-1]
            renamed[_STAT_NAMES.get(field, field)] = stats[name]
        dt["sample_stats"] = xr.Dataset(renamed, attrs=stats.attrs)
    dt.attrs["sampler"] = type(mcmc.sampler).__name__
    return dt, horizon, beta, target


def _from_samples(samples, mdp, start, exact, horizon, beta):
    if "actions" not in samples:
        raise ValueError(f"source must hold 'actions' draws, got keys {sorted(samples)}")
    actions = np.asarray(samples["actions"])
    if not np.issubdtype(actions.dtype, np.integer):
        raise TypeError(f"source['actions'] must be integer action ids, got dtype {actions.dtype}")
    if actions.ndim == 2:
        actions = actions[None]
        lead = 1
    elif actions.ndim == 3:
        lead = 0
    else:
        raise ValueError(
            f"source['actions'] must have shape (n, T) or (chains, draws, T), got {actions.shape}"
        )
    if 0 in actions.shape:
        raise ValueError(
            f"source['actions'] holds no draws (shape {np.shape(samples['actions'])}): at least "
            "one chain of one draw of T >= 1 actions is needed"
        )
    if actions.size and (actions.min() < 0 or actions.max() >= mdp.n_actions):
        raise ValueError(f"source['actions'] must lie in [0, {mdp.n_actions}), the action ids")
    if horizon is not None and check_horizon(horizon) != actions.shape[-1]:
        raise ValueError(f"horizon={horizon} does not match actions of length {actions.shape[-1]}")
    horizon = actions.shape[-1]
    if beta is None:
        if exact is None:
            raise ValueError("beta is required to convert a dict of draws unless exact is given")
        beta = exact.beta
    beta = float(check_beta(beta))
    given = {name: samples[name] for name in ("states", "rewards") if name in samples}
    if len(given) == 2:
        draws = _given_draws(given, mdp, start, actions, lead)
    else:
        draws = _rolled_out_draws(given, mdp, actions, lead)
    draws["states"] = draws["states"][..., 1:]
    dt = from_dict(
        {"posterior": draws},
        dims=DIMS,
        coords={"step": np.arange(1, horizon + 1), "time": np.arange(horizon)},
        sample_dims=SAMPLE_DIMS,
    )
    return dt, horizon, beta


def _given_draws(given, mdp, start, actions, lead):
    """Draws whose states and rewards are given: every step must be a possible outcome (of
    positive probability) of its state and action, with that outcome's reward."""
    states = np.asarray(given["states"])
    rewards = np.asarray(given["rewards"], dtype=float)
    states, rewards = (states[None], rewards[None]) if lead else (states, rewards)
    if states.shape != (*actions.shape[:-1], actions.shape[-1] + 1) or rewards.shape != (
        actions.shape
    ):
        raise ValueError(
            f"source['states'] (..., T + 1) and source['rewards'] (..., T) must match "
            f"source['actions'] {actions.shape}, got {states.shape} and {rewards.shape}"
        )
    try:
        check_steps(actions, states, rewards, start, _outcome_arrays(mdp), "", _DYNAMICS)
    except RunError as error:
        raise ValueError(f"source: {error}") from None
    return {"actions": actions, "states": states, "rewards": rewards}


def _rolled_out_draws(given, mdp, actions, lead):
    """Draws from the actions alone, which fix the path only with one outcome per step (K = 1,
    outcome index 0); a given ``states`` or ``rewards`` must be that path's."""
    if mdp.n_outcomes > 1:
        raise ValueError(
            f"source must hold 'states' and 'rewards' draws on an MDP with stochastic dynamics "
            f"(actions alone do not fix them); missing "
            f"{[name for name in ('states', 'rewards') if name not in given]}"
        )
    states, rewards = rollout(mdp, actions, outcomes=np.zeros_like(actions))
    draws = {"actions": actions, "states": np.asarray(states), "rewards": np.asarray(rewards)}
    for name, value in given.items():
        value = np.asarray(value)
        value = value[None] if lead else value
        if value.shape != draws[name].shape or not np.allclose(value, draws[name]):
            raise ValueError(f"source[{name!r}] does not match the rollout of source['actions']")
    return draws


def _outcome_arrays(mdp):
    """``outcome_states``, ``outcome_probs``, ``outcome_rewards`` (S, A, K) as NumPy arrays."""
    return (
        np.asarray(mdp.outcome_states),
        np.asarray(mdp.outcome_probs),
        np.asarray(mdp.outcome_rewards),
    )


def _check_same_mdp(a, b):
    """``ValueError`` unless ``a`` and ``b`` have the same outcomes and start distribution."""
    if a is b:
        return
    arrays = [(*_outcome_arrays(world), np.asarray(world.start_probs)) for world in (a, b)]
    if not all(
        np.shape(x) == np.shape(y) and np.array_equal(x, y) for x, y in zip(*arrays, strict=True)
    ):
        raise ValueError("env must be the environment the samples were drawn on (it differs)")


def _env_data(mdp):
    """The ``constant_data`` variables: ``next_state`` and ``reward`` (state, action) when every
    step has one outcome (K = 1: these tables hold the whole MDP), else the outcome arrays
    (state, action, outcome) and the expected ``reward``; a grid's cell rewards ``grid``."""
    outcomes = _outcome_arrays(mdp)
    if outcomes[0].shape[-1] == 1:
        data = {
            "next_state": (("state", "action"), outcomes[0][..., 0]),
            "reward": (("state", "action"), outcomes[2][..., 0]),
        }
    else:
        dims = ("state", "action", "outcome")
        data = {name: (dims, values) for name, values in zip(OUTCOME_NAMES, outcomes, strict=True)}
        data["reward"] = (("state", "action"), np.asarray(mdp.expected_reward))
    if isinstance(mdp, GridWorld):
        data["grid"] = (("row", "col"), np.asarray(mdp.rewards))
    return data


def _exact_dataset(exact, mdp, horizon, beta):
    if not isinstance(exact, ExactPosterior):
        raise TypeError(f"exact must be a pgm_rl.ExactPosterior, got {type(exact).__name__}")
    _check_same_mdp(exact.mdp, mdp)
    if exact.horizon != horizon or not np.isclose(exact.beta, beta, rtol=1e-12, atol=0.0):
        raise ValueError(
            f"exact is for horizon={exact.horizon}, beta={exact.beta}; the draws are for "
            f"horizon={horizon}, beta={beta}"
        )
    return xr.Dataset(
        {
            "state_marginals": (("step", "state"), np.asarray(exact.state_marginals)),
            "action_marginals": (("time", "action"), np.asarray(exact.action_marginals)),
            "log_z": float(exact.log_z),
            "expected_return": float(exact.expected_return),
        },
        coords={
            "step": np.arange(horizon + 1),
            "time": np.arange(horizon),
            "state": np.arange(mdp.n_states),
            "action": np.arange(mdp.n_actions),
        },
    )


def best_state(mdp):
    """The state entered by the largest reward of a possible outcome of ``mdp`` (the goal cell of
    a grid)."""
    return best_outcome(*_outcome_arrays(mdp))


def env_from_datatree(dt):
    """Rebuild the environment stored in ``dt``: a GridWorld when it has a grid, else a TabularMDP."""
    data = tree_group(dt, "constant_data")
    if "grid" in data:
        cells = list(dt.attrs.get("terminal", []))
        return GridWorld(
            data["grid"].values,
            (int(dt.attrs["start_row"]), int(dt.attrs["start_col"])),
            slip=float(dt.attrs.get("slip", 0.0)),
            terminal=[tuple(cells[i : i + 2]) for i in range(0, len(cells), 2)],
        )
    return TabularMDP.from_outcomes(*stored_outcomes(data), int(dt.attrs["start_state"]))


def trajectory_states(dt):
    """The whole sampled paths, the start state included.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.

    Returns
    -------
    xarray.DataArray, shape (chain, draw, step = 0..T)
        ``dt["posterior"]["states"]`` (steps 1..T) with the start state prepended.
    """
    states = tree_group(dt, "posterior")["states"]
    start = xr.full_like(states.isel(step=[0]), int(dt.attrs["start_state"]))
    return xr.concat([start.assign_coords(step=[0]), states], dim="step")


def tree_group(dt, name):
    """``dt[name]`` as a Dataset; ``TypeError``/``ValueError`` unless ``dt`` is a DataTree with
    that group."""
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree from to_datatree, got {type(dt).__name__}")
    if name not in dt.children:
        raise ValueError(f"dt has no {name!r} group; build it with pgm_rl.diagnostics.to_datatree")
    return dt[name].to_dataset()
