"""Run registered kernels on one problem and tabulate them against exact inference.

The library side of ``pgm-rl sample`` and ``pgm-rl compare`` (and of ``examples/demo.py``):

- :func:`run_kernel` runs one kernel of :data:`pgm_rl.kernels.registry.KERNELS` through
  :class:`numpyro.infer.MCMC` with the chain method and extra fields its registry record names;
- :func:`compare_kernels` runs several, plus exact iid sampling with the same number of draws,
  and compares each with the exact posterior;
- :func:`format_table` prints the rows as aligned text or Markdown (:data:`TABLE_COLUMNS`).

Shapes: ``T`` = horizon, ``S`` = states; a run of ``chains`` chains of ``samples`` draws gives
``actions`` (chains, samples, T) and ``states`` (chains, samples, T + 1).
"""

import math
import numbers
import time
import warnings
from collections.abc import Mapping

import jax
import numpy as np
from numpyro.infer import MCMC

from pgm_rl._checks import (
    check_beta,
    check_draws_fit,
    check_horizon,
    check_positive_int,
    trajectory_draw_bytes,
)
from pgm_rl.diagnostics import compare_to_exact, to_datatree
from pgm_rl.exact import ExactPosterior, solve
from pgm_rl.kernels.registry import KERNELS, make_kernel
from pgm_rl.model import trajectory_model

__all__ = ["TABLE_COLUMNS", "compare_kernels", "format_table", "run_kernel"]

# (row key, column header) of the table :func:`format_table` prints.
TABLE_COLUMNS = (
    ("kernel", "kernel"),
    ("wall_s", "wall s (incl. compile)"),
    ("ess_per_s", "ESS/s of return"),
    ("max_r_hat", "max R-hat"),
    ("mean_tv", "mean TV vs exact"),
    ("return_error", "E[return] error ± MCSE"),
)
# Keys every row of :func:`compare_kernels` has (``return_mcse`` goes with ``return_error``).
ROW_KEYS = (*(key for key, _ in TABLE_COLUMNS), "return_mcse")
EXACT_IID = "exact iid"
# NumPyro warns and drops the progress bar when chain_method is a callable (jax.vmap).
_PROGRESS_WARNING = "Disabling progress bar"


def run_kernel(
    name,
    env,
    horizon,
    beta,
    *,
    chains=4,
    warmup=500,
    samples=1000,
    seed=0,
    progress_bar=False,
    model=None,
    log=None,
    kernel_params=None,
    chain_method=None,
):
    """Run the registered kernel ``name`` through NumPyro's ``MCMC``.

    Parameters
    ----------
    name : str
        A key of :data:`pgm_rl.kernels.registry.KERNELS`, e.g. ``"action-gibbs"``.
    env : TabularMDP
        The environment, ``S`` states.
    horizon : int
        ``T`` >= 1 actions.
    beta : float
        Inverse temperature >= 0.
    chains : int
        Chains >= 1, run with the record's ``chain_method`` (``"vectorized"``, or
        ``jax.vmap`` for NumPyro's Gibbs kernels and MixedHMC).
    warmup : int
        Warm-up steps per chain, >= 0.
    samples : int
        Draws kept per chain, >= 1.
    seed : int
        >= 0; the PRNG key is ``jax.random.key(seed)``.
    progress_bar : bool
        NumPyro's progress bar. Where NumPyro cannot show one (a callable ``chain_method``
        with several chains) the run is reported by two ``log`` lines instead, and NumPyro's
        "Disabling progress bar" warning is not shown.
    model : callable, optional
        The NumPyro model, called as ``model(env, horizon, beta)``; defaults to
        :func:`pgm_rl.trajectory_model`.
    log : callable, optional
        Called with one line of text (``print``, say) for the lines above.
    kernel_params : dict, optional
        The kernel's parameters (names of its registry record's ``params``, e.g.
        ``{"num_particles": 64}``; :func:`pgm_rl.kernels.registry.parse_kernel_args` reads them
        from ``NAME=VALUE`` text); the record's defaults where not given.
    chain_method : str or callable, optional
        NumPyro's ``chain_method`` instead of the record's, e.g.
        ``pgm_rl.kernels.shard_chains(pgm_rl.kernels.chains_mesh())`` to split the chains over
        the devices.

    Returns
    -------
    mcmc : numpyro.infer.MCMC
        Finished; ``mcmc.get_samples(group_by_chain=True)`` has ``actions`` (chains, samples,
        T), ``states`` (chains, samples, T + 1), ``rewards`` (chains, samples, T), and the
        record's ``extra_fields`` are collected.
    seconds : float
        Wall-clock time of the run, JIT compilation included.

    Raises
    ------
    TypeError, ValueError
        Naming the argument: an unknown ``name``, a count out of range, a bad ``horizon`` or
        ``beta`` (the environment is checked by the model), or draws that would not fit in
        memory (twice :func:`pgm_rl._checks.trajectory_draw_bytes` a draw), before anything runs.
    """
    record = _record(name)
    horizon = check_horizon(horizon)
    check_beta(beta)
    chains = check_positive_int(chains, "chains")
    warmup = _check_nonnegative_int(warmup, "warmup")
    samples = check_positive_int(samples, "samples")
    seed = _check_nonnegative_int(seed, "seed")
    if not isinstance(progress_bar, bool):
        raise TypeError(f"progress_bar must be a bool, got {progress_bar!r}")
    if model is None:
        model = trajectory_model
    if not callable(model):
        raise TypeError(f"model must be a callable NumPyro model, got {model!r}")
    if log is not None and not callable(log):
        raise TypeError(f"log must be a callable or None, got {log!r}")
    # the run on the device and its draws grouped by chain
    check_draws_fit(chains, samples, 2 * trajectory_draw_bytes(horizon), "the run")

    if chain_method is None:
        chain_method = record.chain_method
    no_bar = progress_bar and callable(chain_method) and chains > 1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PROGRESS_WARNING)
        mcmc = MCMC(
            record.make(model, **(kernel_params or {})),
            num_warmup=warmup,
            num_samples=samples,
            num_chains=chains,
            chain_method=chain_method,
            progress_bar=progress_bar and not no_bar,
        )
    if no_bar and log is not None:
        log(
            f"{name}: {chains} chains under jax.vmap, {warmup} warm-up + {samples} draws each "
            "(NumPyro shows no progress bar here) ..."
        )
    start = time.perf_counter()
    mcmc.run(jax.random.key(seed), env, horizon, beta, extra_fields=record.extra_fields)
    jax.block_until_ready(mcmc.get_samples())
    seconds = time.perf_counter() - start
    if no_bar and log is not None:
        log(f"{name}: done in {seconds:.2f} s")
    return mcmc, seconds


def compare_kernels(
    names,
    env,
    horizon,
    beta,
    *,
    chains=4,
    warmup=500,
    samples=1000,
    seed=0,
    progress_bar=False,
    skip_missing=True,
    exact=None,
    log=print,
):
    """Run several kernels and exact iid sampling on one problem; compare each with exact.

    Parameters
    ----------
    names : sequence of str
        Distinct keys of :data:`pgm_rl.kernels.registry.KERNELS`, at least one.
    env : TabularMDP
    horizon : int
        ``T``.
    beta : float
    chains, warmup, samples, seed, progress_bar
        As in :func:`run_kernel`, the same for every kernel. Exact iid sampling draws
        ``chains * samples`` trajectories, laid out as ``chains`` chains.
    skip_missing : bool
        Skip (with a note through ``log``) a kernel whose module cannot be imported;
        otherwise such a kernel raises ``ValueError``.
    exact : ExactPosterior, optional
        The exact posterior of this problem; solved here when not given.
    log : callable
        Called with one line of text per kernel run.

    Returns
    -------
    rows : list of dict
        One per kernel that ran, then ``"exact iid"``; keys ``kernel``, ``wall_s``,
        ``ess_per_s``, ``max_r_hat`` (the worst R-hat over the return and the
        state-occupancy indicators), ``mean_tv``, ``return_error``, ``return_mcse`` (see
        :data:`TABLE_COLUMNS`), and ``max_r_hat_at`` (where the worst R-hat occurs) and
        ``disagrees`` (the run is further from exact than exact iid draws get, see
        :func:`pgm_rl.diagnostics.compare_to_exact`).
    trees : dict of str to xarray.DataTree
        Each run as :func:`pgm_rl.diagnostics.to_datatree` lays it out, posterior variables
        (chains, samples, ...); root attributes ``kernel`` and ``wall_seconds`` added.
    comparisons : dict of str to xarray.Dataset
        :func:`pgm_rl.diagnostics.compare_to_exact` of each tree (``tv`` has shape (T + 1,)).

    Raises
    ------
    TypeError, ValueError
        Naming the argument, before anything runs; also when the runs' trees and the
        diagnostics of one would not fit in memory.
    """
    names = _check_names(names)
    horizon = check_horizon(horizon)
    check_beta(beta)
    chains = check_positive_int(chains, "chains")
    samples = check_positive_int(samples, "samples")
    _check_nonnegative_int(warmup, "warmup")
    seed = _check_nonnegative_int(seed, "seed")
    if not callable(log):
        raise TypeError(f"log must be a callable, got {log!r}")
    if exact is None:
        exact = solve(env, horizon, beta)
    elif not isinstance(exact, ExactPosterior):
        raise TypeError(f"exact must be a pgm_rl.ExactPosterior or None, got {exact!r}")
    elif exact.horizon != horizon or float(exact.beta) != float(beta):
        raise ValueError(
            f"exact is for horizon={exact.horizon}, beta={exact.beta:g}; the problem has "
            f"horizon={horizon}, beta={beta:g}"
        )
    # every kernel's tree and exact iid's are kept; one run (two copies) and the diagnostics
    # of one tree at a time
    stored = (len(names) + 3) * trajectory_draw_bytes(horizon)
    per_draw = stored + trajectory_draw_bytes(horizon, exact.state_marginals.shape[-1])
    check_draws_fit(
        chains, samples, per_draw, f"{len(names) + 1} runs kept, diagnosed one at a time"
    )
    trees, seconds = {}, {}
    for name in names:
        try:
            make_kernel(name)
        except ImportError as error:
            if not skip_missing:
                raise ValueError(f"kernel {name!r} is not available: {error}") from None
            log(f"note: skipping kernel {name!r}, its module is not available ({error})")
            continue
        log(f"running {name}: {chains} chains x ({warmup} warmup + {samples} draws)")
        mcmc, seconds[name] = run_kernel(
            name,
            env,
            horizon,
            beta,
            chains=chains,
            warmup=warmup,
            samples=samples,
            seed=seed,
            progress_bar=progress_bar,
            log=log,
        )
        trees[name] = to_datatree(mcmc, env, exact)
        trees[name].attrs.update(kernel=name, wall_seconds=seconds[name])
    start = time.perf_counter()
    draws = jax.block_until_ready(exact.sample(jax.random.key(seed), chains * samples))
    seconds[EXACT_IID] = time.perf_counter() - start
    # (chains, draws, ...) for every site the draws have: states and rewards too, which a
    # stochastic MDP's actions alone do not determine
    by_chain = {
        site: np.asarray(value).reshape(chains, samples, *np.shape(value)[1:])
        for site, value in draws.items()
    }
    trees[EXACT_IID] = to_datatree(by_chain, env, exact)
    trees[EXACT_IID].attrs.update(
        sampler=EXACT_IID, kernel=EXACT_IID, wall_seconds=seconds[EXACT_IID]
    )
    comparisons = {name: compare_to_exact(dt) for name, dt in trees.items()}
    rows = [_row(name, seconds[name], comparisons[name]) for name in trees]
    return rows, trees, comparisons


def _row(name, seconds, comparison):
    """One table row from a run's wall time and its :func:`compare_to_exact` Dataset."""
    return {
        "kernel": name,
        "wall_s": seconds,
        "ess_per_s": float(comparison["ess_bulk"]) / seconds,
        "max_r_hat": float(comparison["max_r_hat"]),
        "mean_tv": float(comparison["mean_tv"]),
        "return_error": float(comparison["expected_return_error"]),
        "return_mcse": float(comparison["expected_return_mcse"]),
        "max_r_hat_at": str(comparison.attrs.get("max_r_hat_at", "")),
        "disagrees": bool(comparison["disagrees"]),
    }


def format_table(rows, markdown=False):
    """Format :func:`compare_kernels` rows as an aligned text table or a Markdown table.

    Parameters
    ----------
    rows : sequence of mapping
        Each with the keys of :data:`ROW_KEYS` (``kernel`` a str, the others numbers; NaN
        prints as ``nan``).
    markdown : bool
        A Markdown table instead of aligned text.

    Returns
    -------
    str
        A header line, a rule, one line per row; no trailing newline.

    Raises
    ------
    TypeError, ValueError
        ``rows`` is not a sequence of mappings, or a row lacks a key (named).
    """
    if isinstance(rows, (str, bytes, Mapping)) or not hasattr(rows, "__iter__"):
        raise TypeError(f"rows must be a sequence of dicts (compare_kernels rows), got {rows!r}")
    if not isinstance(markdown, bool):
        raise TypeError(f"markdown must be a bool, got {markdown!r}")
    header = [label for _, label in TABLE_COLUMNS]
    body = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{index}] must be a dict, got {type(row).__name__}")
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"rows[{index}] lacks {', '.join(missing)}")
        body.append(
            [
                str(row["kernel"]),
                _number(row["wall_s"], "{:.2f}"),
                _number(row["ess_per_s"], "{:.1f}"),
                _number(row["max_r_hat"], "{:.3f}"),
                _number(row["mean_tv"], "{:.3f}"),
                f"{_number(row['return_error'], '{:+.4g}')} ± "
                f"{_number(row['return_mcse'], '{:.2g}')}",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _number(value, fmt):
    value = float(value)
    return "nan" if not math.isfinite(value) else fmt.format(value)


def _record(name):
    """The registry record of ``name``, or TypeError/ValueError naming the argument."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a kernel name (str), got {name!r}")
    if name not in KERNELS:
        raise ValueError(f"name must be one of {', '.join(KERNELS)}; got {name!r}")
    return KERNELS[name]


def _check_names(names):
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise TypeError(f"names must be a sequence of kernel names, got {names!r}")
    names = list(names)
    if not names:
        raise ValueError("names must name at least one kernel")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"names must hold kernel names (str), got {name!r}")
    unknown = [name for name in names if name not in KERNELS]
    if unknown:
        raise ValueError(
            f"names must be from {', '.join(KERNELS)}; unknown: {', '.join(map(repr, unknown))}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"names must be distinct; repeated: {', '.join(repeated)}")
    return names


def _check_nonnegative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value}")
    return int(value)
