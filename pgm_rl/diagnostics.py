"""From samples to an ArviZ DataTree, its convergence summary and its distance to the exact answer.

The DataTree layout (``T`` = horizon, ``S`` = states, ``A`` = actions):

``posterior``
    ``actions`` (chain, draw, time), ``states`` (chain, draw, step), ``rewards`` (chain, draw,
    time) and ``return`` (chain, draw) = sum of the rewards; coords ``time`` = 0..T-1 and
    ``step`` = 1..T: the states *entered*. The start state (step 0) is not a posterior
    quantity (it is the same in every draw) and lives in the root attribute ``start_state``;
    :func:`trajectory_states` gives the whole path (chain, draw, step = 0..T). Keeping the
    constant step out of ``posterior`` lets ArviZ's own functions run on the tree as an ArviZ
    user calls them (``arviz_plots.plot_rank(dt)`` fails on a constant integer variable).
``sample_stats``
    ``acceptance_rate`` (and ``diverging``) where the kernel reports them.
``constant_data``
    ``next_state`` and ``reward`` (state, action), the tabular MDP; ``grid`` (row, col), the cell
    rewards, for a :class:`~pgm_rl.GridWorld`.
``exact`` (when an :class:`~pgm_rl.ExactPosterior` is given)
    ``state_marginals`` (step = 0..T, state), ``action_marginals`` (time, action), ``log_z``,
    ``expected_return``.

Root attributes: ``horizon``, ``beta``, ``start_state``, ``best_state`` (the state entered with
the largest reward: the goal), ``sampler`` and, for a grid, ``start_row``/``start_col``.
The environment can be rebuilt from the tree with :func:`env_from_datatree`; :func:`check_run`
checks a tree (e.g. one read back by :func:`pgm_rl.io.load`) against this layout and its own data.

A caveat for ArviZ's own rank plots: ``arviz_plots.plot_rank`` ranks tied values by position,
so for the discrete sites (and a return with ties) it shows a failing rank test even for exact
iid draws. :func:`pgm_rl.plots.plot_rank` breaks ties at random instead.
"""

import importlib
import warnings
from statistics import NormalDist

import jax
import numpy as np
import numpyro.infer  # before arviz_base: see _restore_numpyro_initialization
import pandas as pd
import xarray as xr
from numpyro.infer import MCMC


def _restore_numpyro_initialization():
    """Work around a lazy-import clash: arviz_base loads numpyro through lazy_loader, and when
    arviz_base is imported before ``numpyro.infer``, ``numpyro.infer`` ends up without its
    ``initialization`` attribute, which ``arviz_base.from_numpyro`` reads. Run when this module
    is imported, so a user's own ``from_numpyro(mcmc)`` works after it, whatever the order."""
    if not hasattr(numpyro.infer, "initialization"):
        numpyro.infer.initialization = importlib.import_module("numpyro.infer.initialization")


_restore_numpyro_initialization()

import arviz_stats as azs  # noqa: E402
from arviz_base import from_dict, from_numpyro  # noqa: E402
from arviz_stats.base import array_stats  # noqa: E402

from pgm_rl._checks import (  # noqa: E402
    check_beta,
    check_horizon,
    check_key,
    check_positive_int,
    check_tree_fits,
)
from pgm_rl.dynamics import rollout  # noqa: E402
from pgm_rl.envs import GridWorld, TabularMDP  # noqa: E402
from pgm_rl.exact import ExactPosterior  # noqa: E402
from pgm_rl.model import check_env, trajectory_problem  # noqa: E402

__all__ = [
    "SummaryTable",
    "check_run",
    "compare_to_exact",
    "empirical_state_marginals",
    "env_from_datatree",
    "occupancy_r_hat",
    "problems",
    "summary",
    "to_datatree",
    "trajectory_states",
    "tv_distance",
    "weighted_state_marginals",
]

DIMS = {"actions": ["time"], "states": ["step"], "rewards": ["time"]}
SUMMARY_COLUMNS = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]
R_HAT_THRESHOLD = 1.01
# summary's end rows: the fewest end states holding this fraction of the draws, at most this many
END_MASS = 0.9
MAX_END_ROWS = 5
# Reference replicates for compare_to_exact: how many, and how many sd above their mean.
REFERENCE_REPLICATES = 32
REFERENCE_Z = 4.0
MIN_REFERENCE_DRAWS = 20
# An occupancy indicator's own ESS is trusted from this many visits (runs of its rarer value).
MIN_VISITS = 50
# Kernel state fields (NumPyro extra_fields) -> sample_stats names.
_STAT_NAMES = {"accept_prob": "acceptance_rate", "diverging": "diverging"}
_SAMPLE_DIMS = ["chain", "draw"]


# ----------------------------------------------------------------------------- array helpers


def empirical_state_marginals(states, n_states):
    """Empirical state marginals of sampled trajectories.

    Parameters
    ----------
    states : int array, shape (..., T + 1)
        Any leading sample dims (e.g. (chains, draws)).
    n_states : int

    Returns
    -------
    array, shape (T + 1, S): the fraction of trajectories in state s at step t.
    """
    n_states = check_positive_int(n_states, "n_states")
    states = np.asarray(states)
    if not np.issubdtype(states.dtype, np.integer) or states.ndim == 0:
        raise TypeError(f"states must be an integer array (..., T + 1), got dtype {states.dtype}")
    states = states.reshape(-1, states.shape[-1])
    if states.shape[0] == 0:
        raise ValueError("states must hold at least one trajectory, got none")
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")
    counts = np.zeros((states.shape[1], n_states))
    np.add.at(counts, (np.arange(states.shape[1])[None, :], states), 1.0)
    return counts / states.shape[0]


def weighted_state_marginals(states, log_weights, n_states):
    """State marginals of weighted trajectories (e.g. SMC particles).

    Parameters
    ----------
    states : int array, shape (N, T + 1)
    log_weights : float array, shape (N,)
        Log weights, normalised or not (they are normalised here).
    n_states : int

    Returns
    -------
    numpy.ndarray, shape (T + 1, S)
        The weight of the trajectories in state s at step t; each row sums to 1.
    """
    states = np.asarray(states)
    log_weights = np.asarray(log_weights, dtype=float)
    n_states = check_positive_int(n_states, "n_states")
    if not np.issubdtype(states.dtype, np.integer) or states.ndim != 2:
        raise TypeError(
            f"states must be an integer array of shape (N, T + 1), got dtype {states.dtype} "
            f"and shape {states.shape}"
        )
    if log_weights.shape != states.shape[:1]:
        raise ValueError(
            f"log_weights must have shape (N,) = {states.shape[:1]}, got {log_weights.shape}"
        )
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")
    if np.isnan(log_weights).any() or not np.isfinite(log_weights.max(initial=-np.inf)):
        raise ValueError("log_weights must have no NaN and at least one finite entry")
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    counts = np.zeros((states.shape[1], n_states))
    np.add.at(counts, (np.arange(states.shape[1])[None, :], states), weights[:, None])
    return counts


def tv_distance(p, q, axis=-1):
    """Total-variation distance ``0.5 * sum |p - q|`` along ``axis``; p and q of one shape."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return 0.5 * np.abs(p - q).sum(axis=axis)


def occupancy_r_hat(states, n_states):
    """Rank-normalised R-hat of every state-occupancy indicator ``1[states[t] == s]``.

    Parameters
    ----------
    states : int array, shape (chains, draws, T + 1)
    n_states : int

    Returns
    -------
    numpy.ndarray, shape (T + 1, S)
        R-hat of each indicator; NaN where the indicator is constant over all draws.

    Notes
    -----
    For a 0/1 variable the rank normalisation of arviz-stats is an affine map (the two values
    go to two z-scores) and folding gives the variable itself, its complement or a constant,
    so the rank-normalised R-hat equals the split R-hat; it is computed in one vectorised
    ``arviz_stats.base.array_stats.rhat(..., method="split")`` call (about 11x faster than
    ``method="rank"``, the same to 1e-15) over the indicators that vary.
    """
    indicators, (steps, cells) = _varying_indicators(states, n_states)
    out = np.full((states.shape[-1], n_states), np.nan)
    if steps.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[steps, cells] = array_stats.rhat(
                indicators, chain_axis=1, draw_axis=2, method="split"
            )
    return out


def _varying_indicators(states, n_states):
    """The occupancy indicators that vary: (K, chains, draws) floats and their (step, state)."""
    states = np.asarray(states)
    if not np.issubdtype(states.dtype, np.integer) or states.ndim != 3:
        raise TypeError(
            f"states must be an integer array (chains, draws, T + 1), got dtype {states.dtype} "
            f"and shape {states.shape}"
        )
    n_states = check_positive_int(n_states, "n_states")
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")
    counts = empirical_state_marginals(states, n_states)
    steps, cells = np.nonzero((counts > 0) & (counts < 1))
    indicators = (np.moveaxis(states[..., steps], -1, 0) == cells[:, None, None]).astype(float)
    return indicators, (steps, cells)


# ----------------------------------------------------------------------------- the tree


def to_datatree(source, env, exact=None, *, horizon=None, beta=None, key=None):
    """Convert sampled trajectories to an ArviZ DataTree (layout in the module docstring).

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
    env : TabularMDP
        The environment the draws come from (the one the MCMC model was run on).
    exact : ExactPosterior, optional
        Stored in the ``exact`` group; must be for the same problem.
    horizon, beta : optional
        Only for a dict ``source``: ``horizon`` is checked against the draws, ``beta`` is
        required unless ``exact`` gives it (an ``SMCResult`` does not record it either).
        Read from the model for an ``MCMC``.
    key : jax PRNG key, optional
        Only for weighted draws: the key of the resampling; default ``jax.random.key(0)`` (so
        the same input always gives the same tree).

    Returns
    -------
    xarray.DataTree
    """
    mdp = check_env(env)
    check_tree_fits(source)  # its copy of the draws fits in memory, before making it
    if mdp.has_random_start:
        raise ValueError(
            "to_datatree stores runs on MDPs with a single start state only: with a random start "
            "the start is a posterior quantity that this layout (start_state attribute) cannot "
            "hold yet"
        )
    if isinstance(source, MCMC):
        if horizon is not None or beta is not None or key is not None:
            raise TypeError(
                "horizon, beta and key are read from the MCMC run; pass them only with a dict"
            )
        dt, horizon, beta = _from_mcmc(source, mdp)
    elif isinstance(source, dict) or hasattr(source, "_asdict"):
        sampler = type(source).__name__ if hasattr(source, "_asdict") else "samples"
        source = dict(source._asdict()) if hasattr(source, "_asdict") else source
        if "log_weights" in source:
            source = _resample_weighted(source, key)
            sampler = (
                f"{sampler}, resampled" if sampler != "samples" else "weighted samples, resampled"
            )
        elif key is not None:
            raise TypeError("key is only used to resample weighted draws (with log_weights)")
        dt, horizon, beta = _from_samples(source, mdp, exact, horizon, beta)
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
        start_state=int(mdp.start_state),
        best_state=best_state(mdp),
    )
    if isinstance(mdp, GridWorld):
        dt.attrs.update(start_row=int(mdp.start[0]), start_col=int(mdp.start[1]))
        if mdp.has_random_dynamics or mdp.terminal:
            cells = [int(index) for cell in mdp.terminal for index in cell]
            dt.attrs.update(slip=float(mdp.slip), terminal=cells)
    if exact is not None:
        dt["exact"] = _exact_dataset(exact, mdp, horizon, beta)
    return dt


def _resample_weighted(samples, key):
    from pgm_rl.smc import resample_draws

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
    problem_mdp, horizon, beta = trajectory_problem(model, mcmc._args, mcmc._kwargs)
    _check_same_mdp(problem_mdp, mdp)
    _restore_numpyro_initialization()
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
    return dt, horizon, beta


def _from_samples(samples, mdp, exact, horizon, beta):
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
    if mdp.has_random_dynamics:
        draws = _stochastic_draws(samples, mdp, actions, lead)
    else:
        states, rewards = rollout(mdp, actions)
        draws = {"actions": actions, "states": np.asarray(states), "rewards": np.asarray(rewards)}
    for name in ("states", "rewards"):
        if name in samples:
            given = np.asarray(samples[name])
            given = given[None] if lead else given
            if given.shape != draws[name].shape or not np.allclose(given, draws[name]):
                raise ValueError(
                    f"source[{name!r}] does not match the rollout of source['actions']"
                )
    draws["states"] = draws["states"][..., 1:]
    dt = from_dict(
        {"posterior": draws},
        dims=DIMS,
        coords={"step": np.arange(1, horizon + 1), "time": np.arange(horizon)},
        sample_dims=_SAMPLE_DIMS,
    )
    return dt, horizon, beta


def _stochastic_draws(samples, mdp, actions, lead):
    """Draws on stochastic dynamics: the states and rewards must be given (actions alone do not
    fix them) and every step must be a possible outcome with its reward."""
    missing = [name for name in ("states", "rewards") if name not in samples]
    if missing:
        raise ValueError(
            f"source must hold 'states' and 'rewards' draws on an MDP with stochastic dynamics "
            f"(actions alone do not fix them); missing {missing}"
        )
    states = np.asarray(samples["states"])
    rewards = np.asarray(samples["rewards"], dtype=float)
    states, rewards = (states[None], rewards[None]) if lead else (states, rewards)
    if states.shape != (*actions.shape[:-1], actions.shape[-1] + 1) or rewards.shape != (
        actions.shape
    ):
        raise ValueError(
            f"source['states'] (..., T + 1) and source['rewards'] (..., T) must match "
            f"source['actions'] {actions.shape}, got {states.shape} and {rewards.shape}"
        )
    arrays = _outcome_arrays(mdp)
    try:
        _check_outcome_steps(actions, states, rewards, int(mdp.start_state), *arrays)
    except _RunError as error:
        raise ValueError(f"source: {error}") from None
    return {"actions": actions, "states": states, "rewards": rewards}


def _outcome_arrays(mdp):
    return (
        np.asarray(mdp.outcome_states),
        np.asarray(mdp.outcome_probs),
        np.asarray(mdp.outcome_rewards),
    )


def _check_outcome_steps(actions, states, rewards, start, out_states, out_probs, out_rewards):
    """Every step (s_t, a_t) -> (s_{t+1}, r_t) is an outcome of positive probability."""
    if np.any(states[..., 0] != start):
        raise _RunError("the 'states' do not begin at 'start_state'")
    scale = max(1.0, float(np.abs(out_rewards).max()))
    s, a = states[..., :-1], actions
    match = (
        (out_states[s, a] == states[..., 1:, None])
        & np.isclose(out_rewards[s, a], rewards[..., None], rtol=1e-6, atol=1e-6 * scale)
        & (out_probs[s, a] > 0)
    )
    bad = ~match.any(axis=-1)
    if bad.any():
        t = int(np.argwhere(bad)[0][-1])
        raise _RunError(
            f"'states' and 'rewards' at time {t} are not a possible outcome of the states and "
            "actions (constant_data outcome_states / outcome_rewards)"
        )


def _check_same_mdp(a, b):
    if a is b:
        return
    if a.has_random_dynamics or b.has_random_dynamics:
        same = a.has_random_dynamics == b.has_random_dynamics and all(
            np.shape(x) == np.shape(y) and np.array_equal(x, y)
            for x, y in zip(_outcome_arrays(a), _outcome_arrays(b), strict=True)
        )
        if not same or int(a.start_state) != int(b.start_state):
            raise ValueError("env must be the environment the samples were drawn on (it differs)")
        return
    if not (
        np.shape(a.next_state) == np.shape(b.next_state)
        and np.array_equal(a.next_state, b.next_state)
        and np.array_equal(a.reward, b.reward)
        and int(a.start_state) == int(b.start_state)
    ):
        raise ValueError("env must be the environment the samples were drawn on (it differs)")


def _env_data(mdp):
    if mdp.has_random_dynamics:
        dims = ("state", "action", "outcome")
        data = {
            name: (dims, values)
            for name, values in zip(
                ("outcome_states", "outcome_probs", "outcome_rewards"),
                _outcome_arrays(mdp),
                strict=True,
            )
        }
        data["reward"] = (("state", "action"), np.asarray(mdp.reward))
    else:
        data = {
            "next_state": (("state", "action"), np.asarray(mdp.next_state)),
            "reward": (("state", "action"), np.asarray(mdp.reward)),
        }
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
    """The state entered by the largest reward of ``mdp`` (the goal cell of a grid)."""
    if mdp.has_random_dynamics:
        return _best_outcome(*_outcome_arrays(mdp))
    reward = np.asarray(mdp.reward)
    return int(np.asarray(mdp.next_state).flat[int(np.argmax(reward))])


def _best_outcome(out_states, out_probs, out_rewards):
    """The state entered by the largest reward of a possible outcome."""
    rewards = np.where(out_probs > 0, out_rewards, -np.inf)
    return int(out_states.flat[int(np.argmax(rewards))])


def env_from_datatree(dt):
    """Rebuild the environment stored in ``dt``: a GridWorld when it has a grid, else a TabularMDP."""
    data = _group(dt, "constant_data")
    if "grid" in data:
        cells = list(dt.attrs.get("terminal", []))
        return GridWorld(
            data["grid"].values,
            (int(dt.attrs["start_row"]), int(dt.attrs["start_col"])),
            slip=float(dt.attrs.get("slip", 0.0)),
            terminal=[tuple(cells[i : i + 2]) for i in range(0, len(cells), 2)],
        )
    if "outcome_states" in data:
        return TabularMDP.from_outcomes(
            data["outcome_states"].values.astype(np.int32),
            data["outcome_probs"].values,
            data["outcome_rewards"].values,
            int(dt.attrs["start_state"]),
        )
    return TabularMDP(
        data["next_state"].values.astype(np.int32),
        data["reward"].values,
        int(dt.attrs["start_state"]),
    )


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
    states = _group(dt, "posterior")["states"]
    start = xr.full_like(states.isel(step=[0]), int(dt.attrs["start_state"]))
    return xr.concat([start.assign_coords(step=[0]), states], dim="step")


def _group(dt, name):
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree from to_datatree, got {type(dt).__name__}")
    if name not in dt.children:
        raise ValueError(f"dt has no {name!r} group; build it with pgm_rl.diagnostics.to_datatree")
    return dt[name].to_dataset()


# ----------------------------------------------------------------------------- checking a run

_POSTERIOR_DIMS = {
    "actions": ("chain", "draw", "time"),
    "states": ("chain", "draw", "step"),
    "rewards": ("chain", "draw", "time"),
    "return": ("chain", "draw"),
}


class _RunError(Exception):
    """One inconsistency found by :func:`check_run` (turned into its ValueError)."""


def check_run(dt, source="dt"):
    """Check a run (e.g. one read back by :func:`pgm_rl.io.load`) against its own data.

    :func:`pgm_rl.io.load` reads any DataTree; the functions of this module and the pictures
    trust the layout of :func:`to_datatree` (module docstring). This checks that layout, so a
    damaged or edited file is refused by name instead of giving a traceback or, worse, a
    plausible but wrong report:

    - the groups ``posterior`` and ``constant_data`` are there;
    - the root attributes ``horizon`` (int >= 1), ``beta`` (finite number >= 0),
      ``start_state`` and ``best_state`` (ints), ``sampler`` (str) are there with these types
      (``kernel``, when there, is a str); for a grid also ``start_row`` and ``start_col``;
    - ``constant_data``: ``next_state`` (state, action) integer state indices in [0, S),
      ``reward`` (state, action) finite; ``grid`` (row, col), when there, has rows * cols = S
      cells and ``start_state = start_row * cols + start_col``;
    - ``start_state`` and ``best_state`` are state indices in [0, S); ``best_state`` is the
      state entered with the largest reward (as :func:`to_datatree` sets it);
    - ``posterior``: ``actions`` (chain, draw, time), ``states`` (chain, draw, step),
      ``rewards`` (chain, draw, time) and ``return`` (chain, draw), at least one chain and
      one draw, ``time`` = 0..T-1 and ``step`` = 1..T with T = ``horizon``; integer actions in
      [0, A) and states in [0, S); the states and rewards are the rollout of the actions from
      ``start_state`` and ``return`` is the sum of the rewards;
    - ``sample_stats``, when there, has the posterior's chains and draws; ``exact``, when
      there, has ``state_marginals`` (step = T + 1, state = S), ``action_marginals``
      (time = T, action = A) and scalar ``log_z`` and ``expected_return``.

    Parameters
    ----------
    dt : xarray.DataTree
    source : str, default "dt"
        What to call the tree in the message, e.g. the file it was read from.

    Returns
    -------
    xarray.DataTree
        ``dt`` itself, unchanged.

    Raises
    ------
    TypeError
        ``dt`` is not a DataTree.
    ValueError
        The first inconsistency found, one line naming ``source`` and the group, variable or
        attribute at fault.
    """
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree, got {type(dt).__name__}")
    try:
        _check_run(dt)
    except _RunError as error:
        raise ValueError(f"{source}: not a consistent pgm-rl run: {error}") from None
    return dt


def _check_run(dt):
    for name in ("posterior", "constant_data"):
        if name not in dt.children:
            raise _RunError(f"the {name!r} group is missing")
    attrs = dt.attrs
    horizon = _int_attr(attrs, "horizon", minimum=1)
    beta = _attr(attrs, "beta")
    if isinstance(beta, bool | np.bool_) or not isinstance(beta, int | float | np.number):
        raise _RunError(f"attribute 'beta' must be a number, got {beta!r}")
    if not (np.isfinite(beta) and beta >= 0):
        raise _RunError(f"attribute 'beta' must be a finite number >= 0, got {beta!r}")
    for name in ("sampler", "kernel"):
        if (name == "sampler" or name in attrs) and not isinstance(_attr(attrs, name), str):
            raise _RunError(f"attribute {name!r} must be a str, got {attrs[name]!r}")

    data = dt["constant_data"].to_dataset()
    outcomes = None
    if "outcome_states" in data:  # stochastic dynamics (S, A, K)
        dims = ("state", "action", "outcome")
        outcomes = tuple(
            _variable(data, "constant_data", name, dims)
            for name in ("outcome_states", "outcome_probs", "outcome_rewards")
        )
        next_state = outcomes[0]
        if any(array.shape != next_state.shape for array in outcomes):
            raise _RunError("constant_data outcome arrays must have one shape (S, A, K)")
        n_states, n_actions = next_state.shape[:2]
        name = "outcome_states"
        for what, array in (("outcome_probs", outcomes[1]), ("outcome_rewards", outcomes[2])):
            if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
                raise _RunError(f"constant_data {what!r} must be finite numbers")
        if np.any(outcomes[1] < 0) or not np.allclose(outcomes[1].sum(axis=-1), 1.0, atol=1e-6):
            raise _RunError("constant_data 'outcome_probs' must be probabilities summing to 1")
    else:
        next_state = _variable(data, "constant_data", "next_state", ("state", "action"))
        n_states, n_actions = next_state.shape
        name = "next_state"
    reward = _variable(data, "constant_data", "reward", ("state", "action"))
    if n_states == 0 or n_actions == 0:
        raise _RunError(f"constant_data {name!r} is empty (shape {next_state.shape})")
    _in_range(next_state, f"constant_data {name!r}", n_states, "state indices")
    if not np.issubdtype(reward.dtype, np.number) or not np.isfinite(reward).all():
        raise _RunError("constant_data 'reward' must be finite numbers")
    start = _int_attr(attrs, "start_state", minimum=0, below=n_states)
    best = _int_attr(attrs, "best_state", minimum=0, below=n_states)
    if outcomes is None:
        goal = int(next_state.flat[int(np.argmax(reward))])
    else:
        goal = _best_outcome(*outcomes)
    if best != goal:
        raise _RunError(
            f"attribute 'best_state' = {best} is not the state entered with the largest reward "
            f"of constant_data ({goal})"
        )
    if "grid" in data:
        grid = _variable(data, "constant_data", "grid", ("row", "col"))
        height, width = grid.shape
        if height * width != n_states:
            raise _RunError(
                f"constant_data 'grid' has {height}x{width} cells but 'next_state' {n_states} "
                "states"
            )
        row = _int_attr(attrs, "start_row", minimum=0, below=height)
        col = _int_attr(attrs, "start_col", minimum=0, below=width)
        if row * width + col != start:
            raise _RunError(
                f"attributes 'start_row', 'start_col' = ({row}, {col}) are cell "
                f"{row * width + col}, not 'start_state' = {start}"
            )

    posterior = dt["posterior"].to_dataset()
    values = {
        name: _variable(posterior, "posterior", name, dims)
        for name, dims in _POSTERIOR_DIMS.items()
    }
    sizes = dict(posterior.sizes)
    if sizes["chain"] == 0 or sizes["draw"] == 0:
        raise _RunError(
            f"the posterior holds no draws ({sizes['chain']} chains x {sizes['draw']} draws)"
        )
    for dim, first in (("time", 0), ("step", 1)):
        if sizes[dim] != horizon:
            raise _RunError(
                f"attribute 'horizon' = {horizon} but the posterior has {sizes[dim]} {dim!r} "
                "entries"
            )
        if dim in posterior.coords and not np.array_equal(
            posterior[dim].values, np.arange(first, first + horizon)
        ):
            raise _RunError(f"posterior coordinate {dim!r} must be {first}..{first + horizon - 1}")
    _in_range(values["actions"], "posterior 'actions'", n_actions, "action ids")
    _in_range(values["states"], "posterior 'states'", n_states, "state indices")
    if outcomes is None:
        _check_rollout(values, next_state, reward, start)
    else:
        full = np.concatenate([np.full((*values["actions"].shape[:2], 1), start),
                               values["states"]], axis=-1)  # fmt: skip
        try:
            _check_outcome_steps(values["actions"], full, values["rewards"], start, *outcomes)
        except IndexError:
            raise _RunError("posterior 'actions' or 'states' out of range") from None
        rewards = values["rewards"]
        scale = max(1.0, float(np.abs(outcomes[2]).max())) * max(1, rewards.shape[-1])
        if not np.allclose(values["return"], rewards.sum(axis=-1), rtol=1e-6, atol=1e-6 * scale):
            raise _RunError("posterior 'return' is not the sum of posterior 'rewards'")

    for name in ("sample_stats", "exact"):
        if name in dt.children:
            _check_optional_group(dt[name].to_dataset(), name, sizes, n_states, n_actions)


def _attr(attrs, name):
    if name not in attrs:
        raise _RunError(f"attribute {name!r} is missing")
    return attrs[name]


def _int_attr(attrs, name, minimum, below=None):
    value = _attr(attrs, name)
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise _RunError(f"attribute {name!r} must be an int, got {value!r}")
    value = int(value)
    if value < minimum or (below is not None and value >= below):
        bounds = f">= {minimum}" if below is None else f"in [{minimum}, {below})"
        raise _RunError(f"attribute {name!r} must be an int {bounds}, got {value}")
    return value


def _variable(data, group, name, dims):
    if name not in data:
        raise _RunError(f"{group} variable {name!r} is missing")
    variable = data[name]
    if variable.dims != dims:
        raise _RunError(f"{group} {name!r} must have dims {dims}, got {variable.dims}")
    return variable.values


def _in_range(values, what, size, kind):
    if not np.issubdtype(values.dtype, np.integer):
        raise _RunError(f"{what} must be integer {kind}, got dtype {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= size):
        raise _RunError(
            f"{what} must lie in [0, {size}), the {kind}; found {values.min()}..{values.max()}"
        )


def _check_rollout(values, next_state, reward, start):
    """The states and rewards follow from the actions; the return is their sum."""
    actions, states, rewards = values["actions"], values["states"], values["rewards"]
    for name in ("rewards", "return"):
        if not np.issubdtype(values[name].dtype, np.number):
            raise _RunError(f"posterior {name!r} must be numbers, got dtype {values[name].dtype}")
    state = np.full(actions.shape[:2], start)
    scale = max(1.0, float(np.abs(reward).max()))
    for t in range(actions.shape[-1]):
        action = actions[..., t]
        if not np.array_equal(states[..., t], next_state[state, action]):
            raise _RunError(
                f"posterior 'states' at step {t + 1} are not where the actions lead from "
                "'start_state' through constant_data 'next_state'"
            )
        if not np.allclose(rewards[..., t], reward[state, action], rtol=1e-6, atol=1e-6 * scale):
            raise _RunError(
                f"posterior 'rewards' at time {t} are not constant_data 'reward' of the states "
                "and actions"
            )
        state = states[..., t]
    tolerance = 1e-6 * scale * max(1, actions.shape[-1])
    if not np.allclose(values["return"], rewards.sum(axis=-1), rtol=1e-6, atol=tolerance):
        raise _RunError("posterior 'return' is not the sum of posterior 'rewards'")


def _check_optional_group(data, name, sizes, n_states, n_actions):
    if name == "sample_stats":
        for variable in data.data_vars.values():
            if variable.dims[:2] != ("chain", "draw") or variable.shape[:2] != (
                sizes["chain"],
                sizes["draw"],
            ):
                raise _RunError(
                    f"sample_stats {variable.name!r} must have the posterior's chain and draw "
                    f"dims ({sizes['chain']}, {sizes['draw']}), got {dict(variable.sizes)}"
                )
        return
    horizon = sizes["time"]
    expected = {
        "state_marginals": {"step": horizon + 1, "state": n_states},
        "action_marginals": {"time": horizon, "action": n_actions},
        "log_z": {},
        "expected_return": {},
    }
    for variable, shape in expected.items():
        if variable not in data:
            raise _RunError(f"exact variable {variable!r} is missing")
        found = data[variable]
        if found.dims != tuple(shape) or found.shape != tuple(shape.values()):
            raise _RunError(f"exact {variable!r} must have sizes {shape}, got {dict(found.sizes)}")
        if not np.issubdtype(found.dtype, np.number) or not np.isfinite(found.values).all():
            raise _RunError(f"exact {variable!r} must be finite numbers")


# ----------------------------------------------------------------------------- summaries


def _indicators(dt):
    """``return`` and one ``end[...]`` indicator per end state (:func:`_end_states`), each
    (chain, draw), as one Dataset."""
    posterior = _group(dt, "posterior")
    final = posterior["states"].isel(step=-1, drop=True)
    data = {"return": posterior["return"]}
    for state in _end_states(dt):
        data[_where(dt, None, state, "end")] = (final == state).astype(float)
    return xr.Dataset(data)


def _end_states(dt):
    """The states where the draws end (step T), most frequent first: the fewest that hold
    ``END_MASS`` of the draws, at most ``MAX_END_ROWS``."""
    final = _group(dt, "posterior")["states"].isel(step=-1).values.ravel()
    counts = np.bincount(final)
    order = np.argsort(-counts, kind="stable")
    mass = np.cumsum(counts[order]) / final.size
    keep = min(int(np.searchsorted(mass, END_MASS)) + 1, MAX_END_ROWS)
    return [int(state) for state in order[:keep] if counts[state] > 0]


def _where(dt, step, state, what="occupancy"):
    """``"occupancy[t=1, cell=(4, 1)]"`` on a grid, ``"occupancy[t=1, state=6]"`` otherwise;
    without ``step``: ``"end[cell=(4, 1)]"`` (``what="end"``)."""
    at = "" if step is None else f"t={int(step)}, "
    if "constant_data" in dt.children and "grid" in dt["constant_data"]:
        width = dt["constant_data"]["grid"].shape[1]
        row, col = divmod(int(state), width)
        return f"{what}[{at}cell=({row}, {col})]"
    return f"{what}[{at}state={int(state)}]"


def _worst_occupancy(dt):
    """(r_hat, step, state) of the occupancy indicator with the largest R-hat, or None."""
    states = trajectory_states(dt).values
    n_states = _group(dt, "constant_data").sizes["state"]
    r_hat = occupancy_r_hat(states, n_states)
    if np.isnan(r_hat).all():  # nothing varies, or R-hat undefined (one chain, < 4 draws)
        return None
    step, state = np.unravel_index(np.nanargmax(r_hat), r_hat.shape)
    return float(r_hat[step, state]), int(step), int(state)


def summary(dt, r_hat_threshold=R_HAT_THRESHOLD):
    """Convergence summary: the return, where the draws end, and the worst-mixing occupancy.

    Through :func:`arviz_stats.summary`: mean, sd, bulk and tail ESS, R-hat and the MCSE of
    the mean and sd, for

    - ``"return"``;
    - ``"end[cell=(r, c)]"`` (``"end[state=s]"`` off a grid): the indicator of ending (step
      T) in that cell, for the cells where the draws end, most frequent first: the fewest
      that hold 90% of the draws, at most 5 (with several goals, the ones the posterior
      reaches; no row for a cell no draw ends in);
    - one row for the state-occupancy indicator ``1[states[t] == s]`` (over all steps t and
      states s where it varies) with the largest rank-normalised R-hat, named after where it
      occurs, e.g. ``"occupancy[t=1, cell=(4, 1)]"`` (``"occupancy[t=1, state=6]"`` off a
      grid). Chains that sit on different routes with the same return have a return R-hat
      near 1 but are caught here. When no indicator has an R-hat (every draw takes the same
      path, or one chain only) the row is ``"occupancy[no R-hat]"`` with NaN statistics.

    Indicators that are constant over all draws have NaN ESS and R-hat.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    r_hat_threshold : float, default 1.01
        R-hat above it is flagged (``table.attrs["flagged"]``).

    Returns
    -------
    SummaryTable
        A :class:`pandas.DataFrame` that prints all its columns (no ``...``): one row per
        quantity (``"return"``, the ``end[...]`` rows, then the occupancy row), columns
        ``mean, sd, ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd``.
        ``table.attrs``: ``end_states`` (list of int, the states of the ``end`` rows, in
        order), ``worst_r_hat`` (float, the largest R-hat of all the rows and of
        every varying occupancy indicator; NaN when none is defined), ``worst_r_hat_at``
        (str, the row it occurs in), ``r_hat_threshold`` and ``flagged`` (bool,
        ``worst_r_hat > r_hat_threshold``).
    """
    r_hat_threshold = _check_threshold(r_hat_threshold)
    data = _indicators(dt)
    worst = _worst_occupancy(dt)
    if worst is None:
        name = "occupancy[no R-hat]"
        occupancy = xr.zeros_like(data["return"])
    else:
        _, step, state = worst
        name = _where(dt, step, state)
        occupancy = (trajectory_states(dt).sel(step=step) == state).astype(float)
    data[name] = occupancy.drop_vars("step", errors="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = azs.summary(data, kind="all", round_to="none", sample_dims=_SAMPLE_DIMS)
    table = SummaryTable(table[SUMMARY_COLUMNS])
    if worst is None:
        table.loc[name] = np.nan
    r_hat = table["r_hat"].astype(float)
    if r_hat.notna().any():
        worst_at = str(r_hat.idxmax())
        worst_value = float(r_hat.max())
    else:
        worst_at, worst_value = "", float("nan")
    table.attrs.update(
        end_states=_end_states(dt),
        worst_r_hat=worst_value,
        worst_r_hat_at=worst_at,
        r_hat_threshold=r_hat_threshold,
        flagged=bool(worst_value > r_hat_threshold),
    )
    return table


class SummaryTable(pd.DataFrame):
    """The table of :func:`summary`: a :class:`pandas.DataFrame` whose printed form shows every
    column (pandas' default width hides R-hat and ESS behind ``...``)."""

    @property
    def _constructor(self):
        return SummaryTable

    def __repr__(self):
        with pd.option_context(
            "display.max_columns", None, "display.width", None, "display.expand_frame_repr", False
        ):
            return super().__repr__()

    def __str__(self):
        return self.__repr__()


def _check_threshold(value):
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1.0:
        raise ValueError(f"r_hat_threshold must be a number >= 1, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- against exact


def compare_to_exact(dt, exact=None, *, key=None, replicates=REFERENCE_REPLICATES):
    """Distance of the sampled trajectories to the exact posterior, and whether it is too large.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    exact : ExactPosterior, optional
        Defaults to the tree's ``exact`` group; the thresholds need the exact sampler, so the
        :class:`ExactPosterior` is then rebuilt with ``pgm_rl.solve(env_from_datatree(dt),
        horizon, beta)`` (and checked against the group).
    key : jax PRNG key, optional
        Key of the reference draws; default ``jax.random.key(0)`` (same tree, same answer).
    replicates : int, default 32
        Number R of reference replicates.

    Returns
    -------
    xarray.Dataset
        ``tv`` (step = 0..T): TV distance of the empirical state marginals at each step;
        ``mean_tv``: its mean over the T + 1 steps; ``max_tv``; ``expected_return``,
        ``exact_expected_return``, ``expected_return_error`` (sampled - exact) and
        ``expected_return_mcse`` (MCSE of the sampled mean, arviz-stats); ``ess_bulk`` of the
        return; ``max_r_hat``, the largest R-hat of the return, the ``end`` indicators and
        every varying occupancy indicator (NaN ones skipped; where it occurs is in
        ``attrs["max_r_hat_at"]``, as in :func:`summary`);
        ``occupancy_ess`` (step, state): the effective size of each occupancy indicator
        ``1[states[t] == s]`` (below); ``occupancy_z`` (step, state): its signed deviation
        from the exact marginal in standard units (0 where not tested); ``max_occupancy_z``
        (the largest ``|occupancy_z|``, where it occurs in ``attrs["max_occupancy_z_at"]``)
        and ``occupancy_z_threshold``;
        ``n_ref_tv`` (the iid sample size with the run's expected TV, a summary of
        ``occupancy_ess``), ``n_ref_return`` (the bulk ESS of the return, as used below);
        ``tv_threshold``, ``max_tv_threshold``, ``return_error_threshold`` and ``disagrees``
        (bool): ``mean_tv > tv_threshold`` or ``max_tv > max_tv_threshold`` or
        ``|expected_return_error| > return_error_threshold`` or ``max_occupancy_z >
        occupancy_z_threshold``.

    Notes
    -----
    Every test asks what a correct run with the run's own *effective* sizes would show, so a
    correct but autocorrelated MCMC run is not flagged, and each is set to a family-wise
    false-alarm rate of about ``2 * Phi(-4)`` = 6e-5 (``REFERENCE_Z`` = 4 sd).

    - Effective sizes: each occupancy indicator (steps 1..T) gets its own bulk ESS
      (arviz-stats), clipped to [``min(20, draws)``, draws], where that estimate is reliable:
      the run visits the cell (or leaves it) at least 50 separate times. Others (a cell seen
      in a few runs of draws, or never) get at most the smallest reliable effective size of
      their step (of the run if the step has none; all draws if nothing varies): an ESS
      estimated from two visits can be the number of draws on a chain that repeats every
      draw ten times (measured: 24% false alarms over 50 such runs without this). A kernel mixes
      some cells far more slowly than others (e.g. the choice of route around a trap), and
      the TV is dominated by the slowest ones: one effective size for every cell would be too
      strict for a correct run.
    - Per indicator: the signed root of the binomial likelihood-ratio statistic of the sampled
      frequency against the exact marginal at its effective size (accurate in the tails for
      rare cells, where the Gaussian z is not); ``occupancy_z_threshold`` is the Bonferroni
      quantile over the K tested indicators, valid whatever their correlation. A cell the run
      visits but the posterior cannot (or the reverse) gives an infinite z.
    - TV: ``replicates`` binomial draws per indicator at its effective size (``key``) give
      the expected ``E_t`` and the spread of each ``|p_hat - p|``; the thresholds are
      ``E + 4 sd`` where the sd is the sum of the per-indicator sds (the sd of a sum of
      errors correlated in any way, e.g. one slow mode moving every step together, is at most
      that). ``max_tv_threshold`` is the largest per-step threshold.
    - Return: ``replicates`` sets of ``n_ref_return`` exact iid trajectories give the spread of
      the absolute return error; threshold = mean + 4 sd.

    The effective sizes are capped at the number of draws and floored at ``min(20, draws)``:
    ESS estimates of a few units are themselves unreliable, and a run is never excused below
    the accuracy of 20 iid draws. Chains stuck on different routes make the ESS small and so
    the thresholds wide; they are caught by R-hat (:func:`problems`) rather than here. Chains
    that all sit in one part of the posterior mix well there: their effective sizes are large
    and the missing part is flagged here.
    """
    posterior = _group(dt, "posterior")
    n_states = _group(dt, "constant_data").sizes["state"]
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 2:
        raise ValueError(f"replicates must be an int >= 2, got {replicates!r}")
    key = jax.random.key(0) if key is None else check_key(key)
    exact = _reference_posterior(dt, exact, n_states)
    marginals = np.asarray(exact.state_marginals, dtype=float)
    exact_return = float(exact.expected_return)

    states = trajectory_states(dt).values
    num_draws = states.shape[0] * states.shape[1]
    sampled = empirical_state_marginals(states, n_states)
    tv = tv_distance(sampled, marginals)
    returns = posterior["return"]
    sampled_return = float(returns.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mcse = float(azs.mcse(returns, sample_dims=_SAMPLE_DIMS, method="mean"))
        ess = float(azs.ess(returns, sample_dims=_SAMPLE_DIMS, method="bulk"))
        rhat = _indicators(dt).azstats.rhat(sample_dims=_SAMPLE_DIMS)
    r_hats = {name: float(value) for name, value in rhat.data_vars.items()}
    worst = _worst_occupancy(dt)
    if worst is not None:
        r_hats[_where(dt, worst[1], worst[2])] = worst[0]
    finite = {name: value for name, value in r_hats.items() if np.isfinite(value)}
    max_at = max(finite, key=finite.get) if finite else ""
    max_r_hat = finite[max_at] if finite else float("nan")

    floor = min(MIN_REFERENCE_DRAWS, num_draws)
    raw_ess, visits = _occupancy_ess(states, n_states)
    sizes = _effective_sizes(raw_ess, visits, floor, num_draws)
    varying_sizes = np.where(np.isfinite(raw_ess), sizes, np.nan)
    n_tv = int(max(min(_tv_equivalent_ess(varying_sizes, sampled, num_draws), num_draws), floor))
    n_ret = int(max(min(ess if np.isfinite(ess) else floor, num_draws), floor))
    z, tested = _occupancy_z(sampled, marginals, sizes)
    alpha = 2.0 * NormalDist().cdf(-REFERENCE_Z)
    z_threshold = NormalDist().inv_cdf(1.0 - alpha / (2.0 * max(int(tested.sum()), 1)))
    tv_key, return_key = jax.random.split(key)
    mean_tv_threshold, step_thresholds = _tv_thresholds(marginals, sizes, tv_key, replicates)
    errors = _reference_return_errors(exact, return_key, replicates, n_ret, exact_return)
    return_threshold = float(errors.mean() + REFERENCE_Z * errors.std(ddof=1))
    error = sampled_return - exact_return
    max_z = float(np.abs(z).max())
    z_at = np.unravel_index(int(np.argmax(np.abs(z))), z.shape)
    disagrees = bool(
        tv.mean() > mean_tv_threshold
        or tv.max() > step_thresholds.max()
        or abs(error) > return_threshold
        or max_z > z_threshold
    )
    return xr.Dataset(
        {
            "tv": ("step", tv),
            "mean_tv": float(tv.mean()),
            "max_tv": float(tv.max()),
            "expected_return": sampled_return,
            "exact_expected_return": exact_return,
            "expected_return_error": error,
            "expected_return_mcse": mcse,
            "ess_bulk": ess,
            "max_r_hat": max_r_hat,
            "occupancy_ess": (("step", "state"), sizes),
            "occupancy_z": (("step", "state"), z),
            "max_occupancy_z": max_z,
            "occupancy_z_threshold": z_threshold,
            "n_ref_tv": n_tv,
            "n_ref_return": n_ret,
            "tv_threshold": mean_tv_threshold,
            "max_tv_threshold": float(step_thresholds.max()),
            "return_error_threshold": return_threshold,
            "disagrees": disagrees,
        },
        coords={"step": np.arange(tv.shape[0]), "state": np.arange(n_states)},
        attrs={
            "max_r_hat_at": max_at,
            "max_occupancy_z_at": _where(dt, *z_at) if tested.any() else "",
            "replicates": replicates,
            "reference_z": REFERENCE_Z,
        },
    )


def _reference_posterior(dt, exact, n_states):
    horizon, beta = int(dt.attrs["horizon"]), float(dt.attrs["beta"])
    if exact is not None:
        if not isinstance(exact, ExactPosterior):
            raise TypeError(f"exact must be a pgm_rl.ExactPosterior, got {type(exact).__name__}")
        if exact.horizon != horizon or exact.mdp.n_states != n_states:
            raise ValueError(
                f"exact is for horizon={exact.horizon} with {exact.mdp.n_states} states; dt has "
                f"horizon={horizon} with {n_states} states"
            )
        return exact
    group = _group(dt, "exact")
    from pgm_rl.exact import solve

    exact = solve(env_from_datatree(dt), horizon, beta)
    if not np.allclose(exact.state_marginals, group["state_marginals"].values, atol=1e-6):
        raise ValueError(
            "dt's exact group does not match the exact posterior of its own environment; pass "
            "exact explicitly"
        )
    return exact


def _occupancy_ess(states, n_states):
    """Bulk ESS of each occupancy indicator, (T + 1, S), NaN where it does not vary, and the
    number of visits (runs of the rarer value, 0 or 1, within the chains), (T + 1, S)."""
    indicators, (steps, cells) = _varying_indicators(states, n_states)
    ess = np.full((states.shape[-1], n_states), np.nan)
    visits = np.zeros((states.shape[-1], n_states))
    if steps.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # bulk ESS of a 0/1 variable = ESS of its mean (rank normalisation is affine on it)
            ess[steps, cells] = array_stats.ess(
                indicators, chain_axis=1, draw_axis=2, method="mean"
            )
        changes = np.abs(np.diff(indicators, axis=2)).sum(axis=(1, 2))
        ones = (indicators[..., 0] + indicators[..., -1]).sum(axis=1)
        zeros = 2 * indicators.shape[1] - ones
        visits[steps, cells] = (changes + np.minimum(ones, zeros)) / 2
    return ess, visits


def _effective_sizes(raw_ess, visits, floor, num_draws):
    """Per-indicator effective sizes (see compare_to_exact): the clipped ESS where it is
    reliable (at least ``MIN_VISITS`` visits), else at most the smallest reliable one of the
    step, else of the run, else the number of draws."""
    sizes = np.clip(raw_ess, floor, num_draws)  # NaN stays NaN
    reliable = np.isfinite(sizes) & (visits >= MIN_VISITS)
    trusted = np.where(reliable, sizes, np.nan)
    run_min = float(trusted[reliable].min()) if reliable.any() else float(num_draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps with no reliable indicator
        step_min = np.nanmin(trusted, axis=1, keepdims=True)
    cap = np.where(np.isfinite(step_min), step_min, run_min)
    return np.where(reliable, sizes, np.fmin(sizes, cap))


def _tv_equivalent_ess(raw_ess, sampled, num_draws):
    """The iid sample size whose expected TV matches the run's (see compare_to_exact)."""
    varying = np.isfinite(raw_ess)
    varying[0] = False
    if not varying.any():
        return num_draws
    p = sampled[varying]
    weight = np.sqrt(p * (1.0 - p))
    ess = np.clip(raw_ess[varying], 1.0, num_draws)
    return float((weight.sum() / (weight / np.sqrt(ess)).sum()) ** 2)


def _occupancy_z(sampled, marginals, sizes):
    """Signed root of the binomial likelihood-ratio statistic of each occupancy frequency
    (steps 1..T) against the exact marginal at its effective size: (T + 1, S) z and the
    (T + 1, S) mask of tested indicators (exact marginal in (0, 1), or a sampled one that
    differs from it)."""
    p = np.clip(marginals, 0.0, 1.0)
    tested = ((p > 0) & (p < 1)) | (sampled != p)
    tested[0] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        ones = np.where(sampled > 0, sampled * np.log(sampled / p), 0.0)
        zeros = np.where(sampled < 1, (1 - sampled) * np.log((1 - sampled) / (1 - p)), 0.0)
    statistic = np.maximum(2.0 * sizes * (ones + zeros), 0.0)
    z = np.sign(sampled - p) * np.sqrt(statistic)
    return np.where(tested, z, 0.0), tested


def _tv_thresholds(marginals, sizes, key, replicates):
    """Thresholds of the mean TV and of each step's TV: binomial replicates of every
    occupancy frequency at its effective size; E + REFERENCE_Z * (sum of the per-indicator
    sds), the largest sd of a sum of arbitrarily correlated errors."""
    p = np.clip(marginals, 0.0, 1.0)
    n = np.maximum(np.round(sizes), 1.0)
    counts = jax.random.binomial(key, n, p, shape=(replicates, *p.shape))
    errors = np.abs(np.asarray(counts, dtype=float) / n - p)
    errors[:, 0] = 0.0  # the start is fixed
    expected = 0.5 * errors.mean(axis=0).sum(axis=-1)  # (T + 1,)
    spread = 0.5 * errors.std(axis=0, ddof=1).sum(axis=-1)
    steps = expected + REFERENCE_Z * spread
    return float(expected.mean() + REFERENCE_Z * spread.mean()), steps


def _reference_return_errors(exact, key, replicates, n_ret, exact_return):
    """|mean return - exact| of ``replicates`` sets of ``n_ret`` exact iid draws, (R,).

    Each set is the first ``n_ret`` of a power-of-two number of draws: one compiled sampler
    per size class instead of one per ESS value."""
    bucket = 1 << (n_ret - 1).bit_length()
    out = []
    for replicate_key in jax.random.split(key, replicates):
        draws = exact.sample(replicate_key, bucket)
        returns = np.asarray(draws["rewards"])[:n_ret].sum(axis=-1)
        out.append(abs(returns.mean() - exact_return))
    return np.asarray(out)


def problems(dt, comparison=None, r_hat_threshold=R_HAT_THRESHOLD):
    """Every problem found with a run, one human-readable line each (empty: none found).

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    comparison : xarray.Dataset, optional
        From :func:`compare_to_exact`; adds a line for each distance above its threshold.
    r_hat_threshold : float, default 1.01

    Returns
    -------
    list of str
        - the worst R-hat over the return, the ``end[...]`` rows and the occupancy indicators when it
          is above ``r_hat_threshold``, naming where and giving the per-chain means;
        - chains that never move (every draw the same trajectory, or an acceptance rate of 0
          throughout where ``sample_stats`` records one) and chains identical to each other
          draw for draw (copies: the same seed): R-hat is NaN or meaningless for them, so
          they are named here; not when the tree's ``exact`` group says the posterior is
          one trajectory to within 1 / draws;
        - given ``comparison``: ``"disagrees with the exact posterior: mean TV X > threshold
          Y ..."`` for the mean TV, the max TV and the return error that exceed their
          thresholds, and the occupancy indicator furthest from its exact marginal when it
          is beyond ``occupancy_z_threshold``.
    """
    table = summary(dt, r_hat_threshold)
    lines = _stuck_chains(dt)
    if table.attrs["flagged"]:
        where = table.attrs["worst_r_hat_at"]
        per_chain = _per_chain_means(dt, where)
        lines.append(
            f"R-hat {table.attrs['worst_r_hat']:.3f} > {table.attrs['r_hat_threshold']:g} at "
            f"{where}: the chains disagree (per-chain means {per_chain}); run longer or use a "
            "kernel that mixes better"
        )
    if comparison is not None:
        if not isinstance(comparison, xr.Dataset) or "tv_threshold" not in comparison:
            raise TypeError("comparison must be the xarray.Dataset of compare_to_exact")
        n_tv, n_ret = int(comparison["n_ref_tv"]), int(comparison["n_ref_return"])
        checks = [
            ("mean TV", float(comparison["mean_tv"]), float(comparison["tv_threshold"]), n_tv),
            ("max TV", float(comparison["max_tv"]), float(comparison["max_tv_threshold"]), n_tv),
            (
                "|E[return] error|",
                abs(float(comparison["expected_return_error"])),
                float(comparison["return_error_threshold"]),
                n_ret,
            ),
        ]
        for label, value, threshold, n_ref in checks:
            if value > threshold:
                reference = (
                    f"what {n_ref} exact iid draws reach"
                    if label.startswith("|")
                    else "what the run's effective sizes allow"
                )
                lines.append(
                    f"disagrees with the exact posterior: {label} {value:.4g} > threshold "
                    f"{threshold:.4g} ({reference}, mean + {REFERENCE_Z:g} sd)"
                )
        if "max_occupancy_z" in comparison:
            lines.extend(_occupancy_line(dt, comparison))
    return lines


def _occupancy_line(dt, comparison):
    """The problem line of the occupancy indicator furthest from its exact marginal, if any."""
    z_max, threshold = (
        float(comparison["max_occupancy_z"]),
        float(comparison["occupancy_z_threshold"]),
    )
    if not z_max > threshold:
        return []
    z = comparison["occupancy_z"].values
    step, state = np.unravel_index(int(np.argmax(np.abs(z))), z.shape)
    sampled = float((trajectory_states(dt).sel(step=step) == state).mean())
    exact = float(dt["exact"]["state_marginals"][step, state]) if "exact" in dt.children else None
    versus = f" vs exact {exact:.4g}" if exact is not None else ""
    size = float(comparison["occupancy_ess"][step, state])
    return [
        f"disagrees with the exact posterior: {_where(dt, step, state)} sampled "
        f"{sampled:.4g}{versus}, z = {z[step, state]:.3g} beyond +-{threshold:.3g} at its "
        f"effective size {size:.0f} (family-wise {REFERENCE_Z:g} sd over the occupancy "
        "indicators)"
    ]


def _stuck_chains(dt):
    """Problem lines for chains that never move and chains that are copies of each other."""
    posterior = _group(dt, "posterior")
    paths = np.concatenate(
        [posterior["actions"].values, posterior["states"].values.astype(np.int64)], axis=-1
    )
    chains, draws = paths.shape[:2]
    moves = (paths != paths[:, :1]).any(axis=(1, 2))
    accepts = None
    if "sample_stats" in dt.children and "acceptance_rate" in dt["sample_stats"]:
        rate = dt["sample_stats"]["acceptance_rate"].values.reshape(chains, draws, -1)
        accepts = (rate > 0).any(axis=(1, 2))
        moves &= accepts
    lines = []
    if draws >= 2 and not moves.all() and not _single_trajectory(dt, chains * draws):
        still = np.flatnonzero(~moves)
        why = "every draw is the same trajectory"
        if accepts is not None and not accepts[still].any():
            why += " (acceptance rate 0 throughout)"
        lines.append(
            f"{_chain_list(still, chains)} never move{'s' if still.size == 1 else ''} "
            f"({draws} draws): {why}, so R-hat and ESS say nothing; the kernel is stuck "
            "(its proposal, step size or start) or cannot leave this trajectory"
        )
    if chains >= 2 and moves.any():
        flat = paths.reshape(chains, -1)
        _, first, group = np.unique(flat, axis=0, return_index=True, return_inverse=True)
        copies = [np.flatnonzero(group == g) for g in range(first.size)]
        for members in (m for m in copies if m.size > 1 and moves[m].all()):
            lines.append(
                f"{_chain_list(members, chains)} are identical draw for draw: copies of one "
                "chain (the same seed?), so they count as one and R-hat cannot compare them"
            )
    return lines


def _chain_list(indices, chains):
    if indices.size == chains and chains > 1:
        return f"all {chains} chains"
    names = ", ".join(str(int(i)) for i in indices)
    return f"chain {names}" if indices.size == 1 else f"chains {names}"


def _single_trajectory(dt, num_draws):
    """Whether the tree's exact posterior is one trajectory to within 1 / num_draws: the
    probability of any other action sequence, at most sum_t (1 - max_a P(a_t = a)), is
    below it (then identical draws are what a correct sampler gives)."""
    if "exact" not in dt.children:
        return False
    marginals = dt["exact"]["action_marginals"].values
    return bool((1.0 - marginals.max(axis=-1)).sum() * num_draws < 1.0)


def _per_chain_means(dt, row):
    posterior = _group(dt, "posterior")
    if row == "return":
        values = posterior["return"]
    elif row.startswith("end["):
        values = _indicators(dt)[row]
    else:
        _, step, state = _worst_occupancy(dt)
        values = trajectory_states(dt).sel(step=step) == state
    means = values.astype(float).mean("draw").values
    return ", ".join(f"{value:.3g}" for value in means)
