"""diagnostics.check_run: a run (read back from a file) is checked against its own data.

Issue 13 item 7: ``pgm-rl report`` trusted the file. Every tree :func:`to_datatree` builds
passes (from MCMC, exact draws, SMC, on a grid or a plain MDP, saved and loaded); each kind of
damage is refused with one ``ValueError`` naming the source and the attribute or variable.
"""

import warnings

import jax
import numpy as np
import pytest
import xarray as xr
from helpers import run_mcmc

import pgm_rl
from pgm_rl import io
from pgm_rl.diagnostics import check_run, to_datatree
from pgm_rl.kernels import TrajectoryMH

GRID = [[0.0, -1.0, -1.0], [-1.0, -5.0, 4.0]]  # start (0, 0), the +4 goal is state 5
HORIZON, BETA = 3, 0.5


@pytest.fixture(scope="module")
def grid_tree():
    env = pgm_rl.GridWorld(GRID, (0, 0))
    exact = pgm_rl.solve(env, HORIZON, BETA)
    draws = exact.sample(jax.random.key(0), 80)
    actions = np.asarray(draws["actions"]).reshape(2, 40, HORIZON)
    dt = to_datatree({"actions": actions}, env, exact)
    dt["sample_stats"] = xr.Dataset({"acceptance_rate": (("chain", "draw"), np.ones((2, 40)))})
    return dt


def copy(dt):
    return dt.copy(deep=True)


def test_trees_from_to_datatree_pass_and_are_returned(grid_tree, tmp_path):
    assert check_run(grid_tree) is grid_tree
    path = tmp_path / "run.nc"
    io.save(grid_tree, path)
    loaded = io.load(path)  # attrs come back as NumPy scalars
    assert check_run(loaded, source=str(path)) is loaded

    mdp = pgm_rl.TabularMDP([[1, 2], [2, 0], [0, 1]], [[0.0, 1.0], [2.0, -1.0], [0.5, 0.0]], 0)
    exact = pgm_rl.solve(mdp, 4, 1.0)
    check_run(to_datatree(exact.sample(jax.random.key(1), 30), mdp, exact))  # no grid

    with warnings.catch_warnings():  # 64 particles may saturate: not what is tested here
        warnings.simplefilter("ignore", pgm_rl.smc.SMCSaturationWarning)
        smc = pgm_rl.run_smc(jax.random.key(2), mdp, 4, 1.0, 64)
    check_run(to_datatree(smc, mdp, beta=1.0))  # resampled SMC particles


def test_a_tree_from_mcmc_passes():
    env = pgm_rl.GridWorld(GRID, (0, 0))
    kernel = TrajectoryMH(pgm_rl.trajectory_model)
    mcmc = run_mcmc(
        kernel, env, HORIZON, BETA, warmup=5, draws=20, chains=2, extra_fields=("accept_prob",)
    )
    dt = to_datatree(mcmc, env, pgm_rl.solve(env, HORIZON, BETA))
    assert "sample_stats" in dt.children
    check_run(dt)


def _set_attr(name, value):
    def tamper(dt):
        dt.attrs[name] = value

    return tamper


def _drop_attr(name):
    def tamper(dt):
        del dt.attrs[name]

    return tamper


def _drop_group(name):
    def tamper(dt):
        groups = {key: dt[key].to_dataset() for key in dt.children if key != name}
        attrs = dict(dt.attrs)
        new = xr.DataTree.from_dict(groups)
        new.attrs = attrs
        return new

    return tamper


def _edit(group, name, change):
    """Replace variable ``name`` of ``group`` by ``change(values)`` (same dims)."""

    def tamper(dt):
        data = dt[group].to_dataset()
        variable = data[name]
        data[name] = (variable.dims, change(variable.values.copy()))
        dt[group] = data

    return tamper


def _set_at(index, value):
    def change(values):
        values[index] = value
        return values

    return change


def _shift_step_states(values):
    values[..., 0] = (values[..., 0] + 1) % 6  # still valid states, not where the actions lead
    return values


def _replace_group(group, change):
    def tamper(dt):
        dt[group] = change(dt[group].to_dataset())

    return tamper


TAMPERINGS = {
    "no best_state": (_drop_attr("best_state"), ["'best_state'", "missing"]),
    "horizon 30": (_set_attr("horizon", 30), ["'horizon'", "30", "3"]),
    "best_state 999": (_set_attr("best_state", 999), ["'best_state'", "999", "[0, 6)"]),
    "best_state not the goal": (_set_attr("best_state", 2), ["'best_state'", "largest reward"]),
    "horizon a string": (_set_attr("horizon", "3"), ["'horizon'", "int"]),
    "horizon a bool": (_set_attr("horizon", True), ["'horizon'", "int"]),
    "beta negative": (_set_attr("beta", -1.0), ["'beta'", ">= 0"]),
    "beta nan": (_set_attr("beta", float("nan")), ["'beta'"]),
    "beta a string": (_set_attr("beta", "0.5"), ["'beta'", "number"]),
    "no sampler": (_drop_attr("sampler"), ["'sampler'", "missing"]),
    "kernel not a str": (_set_attr("kernel", 3), ["'kernel'", "str"]),
    "start_state -1": (_set_attr("start_state", -1), ["'start_state'"]),
    "start_state off start_row/col": (
        _set_attr("start_state", 1),
        ["'start_row'", "'start_state'"],
    ),
    "start_col off the grid": (_set_attr("start_col", 3), ["'start_col'"]),
    "no start_row on a grid": (_drop_attr("start_row"), ["'start_row'", "missing"]),
    "no posterior": (_drop_group("posterior"), ["'posterior'", "missing"]),
    "no constant_data": (_drop_group("constant_data"), ["'constant_data'", "missing"]),
    "action 9": (_edit("posterior", "actions", _set_at((0, 0, 0), 9)), ["'actions'", "[0, 5)"]),
    "state -1": (_edit("posterior", "states", _set_at((1, 2, 1), -1)), ["'states'", "[0, 6)"]),
    "states off the rollout": (
        _edit("posterior", "states", _shift_step_states),
        ["'states'", "step 1"],
    ),
    "float actions": (_edit("posterior", "actions", lambda v: v + 0.5), ["'actions'", "integer"]),
    "a reward changed": (_edit("posterior", "rewards", _set_at((0, 3, 2), 99.0)), ["'rewards'"]),
    "a return changed": (_edit("posterior", "return", _set_at((1, 0), 99.0)), ["'return'"]),
    "a NaN return": (_edit("posterior", "return", _set_at((1, 0), np.nan)), ["'return'"]),
    "next_state 6": (_edit("constant_data", "next_state", _set_at((0, 0), 6)), ["'next_state'"]),
    "reward inf": (_edit("constant_data", "reward", _set_at((0, 0), np.inf)), ["'reward'"]),
    "grid of 3 cells": (
        _replace_group("constant_data", lambda d: d.isel(row=[0])),
        ["'grid'", "6 states"],
    ),
    "time coords shifted": (
        _replace_group("posterior", lambda d: d.assign_coords(time=d["time"] + 1)),
        ["'time'", "0..2"],
    ),
    "a draw of states missing": (
        _replace_group("posterior", lambda d: d.drop_vars("states")),
        ["'states'", "missing"],
    ),
    "states transposed": (
        _replace_group("posterior", lambda d: d.assign(states=d["states"].transpose())),
        ["'states'", "dims"],
    ),
    "sample_stats of other draws": (
        _replace_group("sample_stats", lambda d: d.isel(draw=slice(0, 10))),
        ["sample_stats", "'acceptance_rate'"],
    ),
    "exact marginals cut short": (
        _replace_group("exact", lambda d: d.isel(step=slice(0, 2))),
        ["exact", "'state_marginals'"],
    ),
    "exact without log_z": (
        _replace_group("exact", lambda d: d.drop_vars("log_z")),
        ["exact", "'log_z'", "missing"],
    ),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_a_damaged_tree_is_refused_by_name(grid_tree, name):
    tamper, words = TAMPERINGS[name]
    dt = copy(grid_tree)
    dt = tamper(dt) or dt
    with pytest.raises(ValueError) as info:
        check_run(dt, source="'saved.nc'")
    message = str(info.value)
    assert message.startswith("'saved.nc': not a consistent pgm-rl run: "), message
    assert "\n" not in message
    for word in words:
        assert word in message, message
    check_run(grid_tree)  # the fixture is untouched


def test_zero_draws_are_refused(grid_tree):
    dt = copy(grid_tree)
    dt["posterior"] = dt["posterior"].to_dataset().isel(draw=slice(0, 0))
    del dt["sample_stats"]
    with pytest.raises(ValueError, match="no draws"):
        check_run(dt)


def test_not_a_tree_is_a_type_error():
    with pytest.raises(TypeError, match="DataTree"):
        check_run({"posterior": None})
