"""From samples to an ArviZ DataTree, its convergence summary and its distance to the exact answer.

The DataTree layout (``T`` = horizon, ``S`` = states, ``A`` = actions):

``posterior``
    ``actions`` (chain, draw, time), ``states`` (chain, draw, step), ``rewards`` (chain, draw,
    time) and ``return`` (chain, draw) = sum of the rewards; coords ``time`` = 0..T-1,
    ``step`` = 0..T.
``sample_stats``
    ``acceptance_rate`` (and ``diverging``) where the kernel reports them.
``constant_data``
    ``next_state`` and ``reward`` (state, action), the tabular MDP; ``grid`` (row, col), the cell
    rewards, for a :class:`~pgm_rl.GridWorld`.
``exact`` (when an :class:`~pgm_rl.ExactPosterior` is given)
    ``state_marginals`` (step, state), ``action_marginals`` (time, action), ``log_z``,
    ``expected_return``.

Root attributes: ``horizon``, ``beta``, ``start_state``, ``best_state`` (the state entered with
the largest reward: the goal), ``sampler`` and, for a grid, ``start_row``/``start_col``.
The environment can be rebuilt from the tree with :func:`env_from_datatree`.
"""

import importlib
import warnings

import arviz_stats as azs
import numpy as np
import numpyro.infer
import xarray as xr
from arviz_base import from_dict, from_numpyro
from numpyro.infer import MCMC

from pgm_rl._checks import check_beta, check_horizon
from pgm_rl.dynamics import rollout
from pgm_rl.envs import GridWorld, TabularMDP
from pgm_rl.exact import ExactPosterior, empirical_state_marginals, tv_distance
from pgm_rl.model import check_env, trajectory_problem

__all__ = ["compare_to_exact", "env_from_datatree", "summary", "to_datatree"]

DIMS = {"actions": ["time"], "states": ["step"], "rewards": ["time"]}
SUMMARY_COLUMNS = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]
# Kernel state fields (NumPyro extra_fields) -> sample_stats names.
_STAT_NAMES = {"accept_prob": "acceptance_rate", "diverging": "diverging"}


def to_datatree(source, env, exact=None, *, horizon=None, beta=None):
    """Convert sampled trajectories to an ArviZ DataTree (layout in the module docstring).

    Parameters
    ----------
    source : numpyro.infer.MCMC or dict
        A finished ``MCMC`` run on :func:`pgm_rl.trajectory_model` (any kernel; its
        ``extra_fields`` such as ``"accept_prob"`` or ``"hmc_state.accept_prob"`` become
        ``sample_stats``), or a dict of draws with ``"actions"`` of shape (n, T) (one chain,
        e.g. :meth:`ExactPosterior.sample`) or (chains, draws, T); ``"states"`` and
        ``"rewards"`` are recomputed from the actions when absent. Weighted draws (a
        ``"log_weights"`` entry, as from SMC) must be resampled first.
    env : TabularMDP
        The environment the draws come from (the one the MCMC model was run on).
    exact : ExactPosterior, optional
        Stored in the ``exact`` group; must be for the same problem.
    horizon, beta : optional
        Only for a dict ``source``: ``horizon`` is checked against the draws, ``beta`` is
        required unless ``exact`` gives it. Read from the model for an ``MCMC``.

    Returns
    -------
    xarray.DataTree
    """
    mdp = check_env(env)
    if isinstance(source, MCMC):
        if horizon is not None or beta is not None:
            raise TypeError(
                "horizon and beta are read from the MCMC run; pass them only with a dict"
            )
        dt, horizon, beta = _from_mcmc(source, mdp)
    elif isinstance(source, dict) or hasattr(source, "_asdict"):
        source = dict(source._asdict()) if hasattr(source, "_asdict") else source
        dt, horizon, beta = _from_samples(source, mdp, exact, horizon, beta)
        dt.attrs["sampler"] = "samples"
    else:
        raise TypeError(
            f"source must be a numpyro.infer.MCMC or a dict of draws, got {type(source).__name__}"
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
    if exact is not None:
        dt["exact"] = _exact_dataset(exact, mdp, horizon, beta)
    return dt


def _from_mcmc(mcmc, mdp):
    model = mcmc.sampler.model
    problem_mdp, horizon, beta = trajectory_problem(model, mcmc._args, mcmc._kwargs)
    _check_same_mdp(problem_mdp, mdp)
    _restore_numpyro_initialization()
    dt = from_numpyro(mcmc, dims=DIMS)
    keep = [name for name in ("posterior", "sample_stats") if name in dt.children]
    dt = xr.DataTree.from_dict({name: dt[name].to_dataset() for name in keep})
    dt["posterior"] = dt["posterior"].to_dataset()[["actions", "states", "rewards"]]
    if "sample_stats" in dt.children:
        stats = dt["sample_stats"].to_dataset()
        renamed = {}
        for name in stats.data_vars:
            field = name.rsplit(".", 1)[-1]
            renamed[_STAT_NAMES.get(field, field)] = stats[name]
        dt["sample_stats"] = xr.Dataset(renamed, attrs=stats.attrs)
    dt.attrs["sampler"] = type(mcmc.sampler).__name__
    return dt, horizon, beta


def _restore_numpyro_initialization():
    """Work around a lazy-import clash: arviz_base loads numpyro through lazy_loader, and when
    arviz_base is imported before numpyro, ``numpyro.infer`` ends up without its
    ``initialization`` attribute, which ``from_numpyro`` reads."""
    if not hasattr(numpyro.infer, "initialization"):
        numpyro.infer.initialization = importlib.import_module("numpyro.infer.initialization")


def _from_samples(samples, mdp, exact, horizon, beta):
    if "log_weights" in samples:
        raise ValueError(
            "source has log_weights (weighted draws, e.g. SMC output): resample the trajectories "
            "by their weights before converting"
        )
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
    dt = from_dict({"posterior": draws}, dims=DIMS, sample_dims=["chain", "draw"])
    return dt, horizon, beta


def _check_same_mdp(a, b):
    if a is b:
        return
    if not (
        a.next_state.shape == b.next_state.shape
        and np.array_equal(a.next_state, b.next_state)
        and np.array_equal(a.reward, b.reward)
        and a.start_state == b.start_state
    ):
        raise ValueError("env must be the environment the samples were drawn on (it differs)")


def _env_data(mdp):
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
    reward = np.asarray(mdp.reward)
    return int(np.asarray(mdp.next_state).flat[int(np.argmax(reward))])


def env_from_datatree(dt):
    """Rebuild the environment stored in ``dt``: a GridWorld when it has a grid, else a TabularMDP."""
    data = _group(dt, "constant_data")
    if "grid" in data:
        return GridWorld(
            data["grid"].values, (int(dt.attrs["start_row"]), int(dt.attrs["start_col"]))
        )
    return TabularMDP(
        data["next_state"].values.astype(np.int32),
        data["reward"].values,
        int(dt.attrs["start_state"]),
    )


def _group(dt, name):
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree from to_datatree, got {type(dt).__name__}")
    if name not in dt.children:
        raise ValueError(f"dt has no {name!r} group; build it with pgm_rl.diagnostics.to_datatree")
    return dt[name].to_dataset()


def _indicators(dt):
    """``return`` (chain, draw) and ``at_best`` (chain, draw, step = 1..T) as one Dataset."""
    posterior = _group(dt, "posterior")
    at_best = (
        (posterior["states"] == dt.attrs["best_state"]).astype(float).isel(step=slice(1, None))
    )
    return xr.Dataset({"return": posterior["return"], "at_best": at_best})


def summary(dt):
    """Convergence summary of the return and of being at the best cell at each step.

    Through :func:`arviz_stats.summary`: mean, sd, bulk and tail ESS, R-hat and the MCSE of
    the mean and sd, for the return and for the indicators ``at_best[t]`` (the probability of
    being at the best cell, ``dt.attrs["best_state"]``, at step t = 1..T). Indicators that are
    constant over all draws have NaN ESS and R-hat.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.

    Returns
    -------
    pandas.DataFrame
        One row per quantity (``"return"``, ``"at_best[1]"``, ...), columns
        ``mean, sd, ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd``.
    """
    data = _indicators(dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = azs.summary(data, kind="all", round_to="none", sample_dims=["chain", "draw"])
    return table[SUMMARY_COLUMNS]


def compare_to_exact(dt, exact=None):
    """Distance of the sampled trajectories to the exact posterior.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    exact : ExactPosterior, optional
        Defaults to the tree's ``exact`` group.

    Returns
    -------
    xarray.Dataset
        ``tv`` (step): TV distance of the empirical state marginals at each step 0..T;
        ``mean_tv``: its mean over the T + 1 steps; ``max_tv``; ``expected_return``,
        ``exact_expected_return``, ``expected_return_error`` (sampled - exact) and
        ``expected_return_mcse`` (MCSE of the sampled mean, arviz-stats); ``ess_bulk`` of the
        return; ``max_r_hat``, the largest R-hat of the return and the ``at_best`` indicators
        of :func:`summary` (NaN ones skipped).
    """
    posterior = _group(dt, "posterior")
    n_states = _group(dt, "constant_data").sizes["state"]
    if exact is None:
        reference = _group(dt, "exact")
        marginals = reference["state_marginals"].values
        exact_return = float(reference["expected_return"])
    else:
        if not isinstance(exact, ExactPosterior):
            raise TypeError(f"exact must be a pgm_rl.ExactPosterior, got {type(exact).__name__}")
        if exact.horizon != dt.attrs["horizon"] or exact.mdp.n_states != n_states:
            raise ValueError(
                f"exact is for horizon={exact.horizon} with {exact.mdp.n_states} states; dt has "
                f"horizon={dt.attrs['horizon']} with {n_states} states"
            )
        marginals = np.asarray(exact.state_marginals)
        exact_return = float(exact.expected_return)
    empirical = empirical_state_marginals(posterior["states"].values, n_states)
    tv = tv_distance(empirical, marginals)
    returns = posterior["return"]
    sampled_return = float(returns.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mcse = float(azs.mcse(returns, sample_dims=["chain", "draw"], method="mean"))
        ess = float(azs.ess(returns, sample_dims=["chain", "draw"], method="bulk"))
        rhat = float(_indicators(dt).azstats.rhat(sample_dims=["chain", "draw"]).to_array().max())
    return xr.Dataset(
        {
            "tv": ("step", tv),
            "mean_tv": float(tv.mean()),
            "max_tv": float(tv.max()),
            "expected_return": sampled_return,
            "exact_expected_return": exact_return,
            "expected_return_error": sampled_return - exact_return,
            "expected_return_mcse": mcse,
            "ess_bulk": ess,
            "max_r_hat": rhat,
        },
        coords={"step": np.arange(tv.shape[0])},
    )
