"""pgm_rl.io: netCDF round trip, overwrite refusal, atomic writes."""

import os

import jax
import numpy as np
import pytest
import xarray as xr
from conftest import random_grid

import pgm_rl
from pgm_rl import io
from pgm_rl.diagnostics import to_datatree


@pytest.fixture(scope="module")
def tree():
    env = random_grid(3, (3, 4))
    exact = pgm_rl.solve(env, 4, 0.7)
    draws = exact.sample(jax.random.key(0), 60)
    return to_datatree({"actions": np.asarray(draws["actions"]).reshape(2, 30, 4)}, env, exact)


def _files(folder):
    return sorted(os.listdir(folder))


def test_round_trip_preserves_values_dims_coords_and_attrs(tree, tmp_path):
    path = tmp_path / "run.nc"
    assert io.save(tree, path) == str(path)
    loaded = io.load(path)
    xr.testing.assert_identical(loaded, tree)
    assert loaded["posterior"]["states"].dims == ("chain", "draw", "step")
    np.testing.assert_array_equal(loaded["posterior"]["step"].values, np.arange(5))
    assert loaded.attrs["horizon"] == 4 and loaded.attrs["beta"] == 0.7
    # fully in memory and the file closed: it can be removed and the data still read
    os.remove(path)
    assert float(loaded["posterior"]["return"].sum()) == float(tree["posterior"]["return"].sum())


def test_refuses_existing_path_and_keeps_its_bytes(tree, tmp_path):
    path = tmp_path / "run.nc"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"run\.nc"):
        io.save(tree, path)
    assert path.read_bytes() == b"precious"
    assert _files(tmp_path) == ["run.nc"]
    io.save(tree, path, overwrite=True)
    xr.testing.assert_identical(io.load(path), tree)


def _failing_to_netcdf(self, filepath, *args, **kwargs):
    with open(filepath, "wb") as handle:
        handle.write(b"partial netcdf")
    raise OSError("disk full (simulated)")


def test_interrupted_save_leaves_no_file(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(xr.DataTree, "to_netcdf", _failing_to_netcdf)
    path = tmp_path / "run.nc"
    with pytest.raises(OSError, match="simulated"):
        io.save(tree, path)
    assert _files(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_file(tree, tmp_path, monkeypatch):
    path = tmp_path / "run.nc"
    io.save(tree, path)
    before = path.read_bytes()
    monkeypatch.setattr(xr.DataTree, "to_netcdf", _failing_to_netcdf)
    with pytest.raises(OSError, match="simulated"):
        io.save(tree, path, overwrite=True)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["run.nc"]


def test_interrupt_by_keyboard_also_cleans_up(tree, tmp_path, monkeypatch):
    def interrupted(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.DataTree, "to_netcdf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save(tree, tmp_path / "run.nc")
    assert _files(tmp_path) == []


def test_bad_arguments(tree, tmp_path):
    with pytest.raises(TypeError, match=r"dt must be an xarray\.DataTree"):
        io.save({"a": 1}, tmp_path / "x.nc")
    with pytest.raises(TypeError, match="overwrite"):
        io.save(tree, tmp_path / "x.nc", overwrite="yes")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.save(tree, tmp_path / "missing" / "x.nc")
    with pytest.raises(IsADirectoryError):
        io.save(tree, tmp_path, overwrite=True)
    with pytest.raises(FileNotFoundError, match=r"nope\.nc"):
        io.load(tmp_path / "nope.nc")
    assert _files(tmp_path) == []


def test_load_refuses_a_file_that_is_not_netcdf(tmp_path):
    path = tmp_path / "garbage.nc"
    path.write_text("not a netCDF file")
    with pytest.raises(ValueError, match=r"garbage\.nc.*not a readable netCDF-4 file"):
        io.load(path)
