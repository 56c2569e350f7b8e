"""pgm_rl.io: netCDF round trip, overwrite refusal, atomic writes."""

import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys

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
    np.testing.assert_array_equal(
        loaded["posterior"]["step"].values, tree["posterior"]["step"].values
    )
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


class _FaultyDisk:
    """Make ``os.write`` to save's temporary files fail after ``budget`` bytes, like a full disk.

    The first bytes really reach the file (a partial temporary file exists), then every write
    raises ``error``. Writes to other files are untouched.
    """

    def __init__(self, monkeypatch, budget=1000, error=None):
        self.budget = budget
        self.error = (
            error if error is not None else OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        )
        self.temporaries = {}  # fd -> path
        self.real_open, self.real_write = os.open, os.write
        monkeypatch.setattr(os, "open", self.open)
        monkeypatch.setattr(os, "write", self.write)

    def open(self, path, flags, *args, **kwargs):
        fd = self.real_open(path, flags, *args, **kwargs)
        if ".pgm-rl-" in os.fspath(path):
            self.temporaries[fd] = os.fspath(path)
        return fd

    def write(self, fd, data):
        if fd not in self.temporaries:
            return self.real_write(fd, data)
        if self.budget <= 0:
            raise self.error
        written = self.real_write(fd, bytes(data[: self.budget]))
        self.budget -= written
        return written


def test_full_disk_raises_one_oserror_naming_the_target_and_leaves_nothing(
    tree, tmp_path, monkeypatch
):
    disk = _FaultyDisk(monkeypatch)
    path = tmp_path / "run.nc"
    with pytest.raises(OSError) as info:
        io.save(tree, path)
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and "No space left on device" in str(info.value)
    assert ".tmp" not in str(info.value)  # names the target, not a hidden temporary file
    assert (
        info.value.__cause__ is None and info.value.__suppress_context__
    )  # one error, not a chain
    assert len(disk.temporaries) == 1 and disk.budget == 0  # it did write part of a temporary
    assert _files(tmp_path) == []


def test_full_disk_during_overwrite_keeps_the_old_file(tree, tmp_path, monkeypatch):
    path = tmp_path / "run.nc"
    io.save(tree, path)
    before = path.read_bytes()
    _FaultyDisk(monkeypatch, budget=len(before) // 2)
    with pytest.raises(OSError, match="No space left on device"):
        io.save(tree, path, overwrite=True)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["run.nc"]


def test_failed_flush_to_disk_is_reported_and_cleaned_up(tree, tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "run.nc"
    with pytest.raises(OSError, match=r"could not save .*run\.nc.*: Input/output error") as info:
        io.save(tree, path)
    assert info.value.errno == errno.EIO
    assert _files(tmp_path) == []


def test_keyboard_interrupt_during_the_write_is_reraised_after_clean_up(
    tree, tmp_path, monkeypatch
):
    _FaultyDisk(monkeypatch, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        io.save(tree, tmp_path / "run.nc")
    assert _files(tmp_path) == []


def test_keyboard_interrupt_while_publishing_is_reraised_after_clean_up(
    tree, tmp_path, monkeypatch
):
    def link(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(KeyboardInterrupt):
        io.save(tree, tmp_path / "run.nc")
    assert _files(tmp_path) == []


def test_serialisation_errors_pass_through_and_create_no_file(tree, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise ValueError("cannot serialise (simulated)")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(ValueError, match="simulated"):
        io.save(tree, tmp_path / "run.nc")
    assert _files(tmp_path) == []


TMPFS_SCRIPT = """
import gc, importlib.util, os, sys
import numpy as np
import xarray as xr
spec = importlib.util.spec_from_file_location("pgm_rl_io", sys.argv[2])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
folder = sys.argv[1]
target = os.path.join(folder, "run.nc")
# groups and ~500 kB (> 64 KiB): h5py fails in close(), which used to segfault at gc.collect()
rng = np.random.default_rng(0)
names = ("actions", "states", "rewards")
posterior = xr.Dataset({n: (("chain", "draw", "time"), rng.integers(0, 5, (4, 1000, 20))) for n in names})
exact = xr.Dataset({"policy": (("time", "s", "a"), rng.random((20, 18, 5)))}, attrs={"log_z": 1.0})
dt = xr.DataTree.from_dict({"/": xr.Dataset(attrs={"horizon": 20}), "posterior": posterior, "exact": exact})
try:
    io.save(dt, target)
except OSError as error:
    print("OSError", error.errno, str(error))
else:
    print("saved")
gc.collect()
print("left", sorted(os.listdir(folder)))
print("alive")
"""


def test_real_full_tmpfs_raises_and_the_process_lives_on(tmp_path):
    """A 64 KiB tmpfs in a private mount namespace (needs root and ``unshare``; else skipped)."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux and unshare")
    folder = tmp_path / "small"
    folder.mkdir()
    command = (
        f"mount -t tmpfs -o size=64k pgm-rl-test {shlex.quote(str(folder))} || exit 77; "
        f"exec {shlex.quote(sys.executable)} -c {shlex.quote(TMPFS_SCRIPT)} "
        f"{shlex.quote(str(folder))} {shlex.quote(io.__file__)}"
    )
    result = subprocess.run(
        [unshare, "--mount", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 77 or (result.returncode != 0 and "unshare:" in result.stderr):
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, (
        f"exit {result.returncode} (negative: killed by a signal)\n{result.stderr[-2000:]}"
    )
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "alive"
    assert lines[-2] == "left []"  # no temporary file keeps the disk full
    assert lines[0].startswith(f"OSError {errno.ENOSPC} could not save ")
    assert os.path.join(str(folder), "run.nc") in lines[0] and "No space left on device" in lines[0]
    assert result.stderr.strip() == ""  # no h5py tracebacks


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


RACE_SCRIPT = """
import importlib.util, json, multiprocessing, os, random, sys, time
import numpy as np
import xarray as xr
spec = importlib.util.spec_from_file_location("pgm_rl_io", sys.argv[2])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
folder, rounds = sys.argv[1], int(sys.argv[3])
dt = xr.DataTree(xr.Dataset({"x": ("n", np.arange(20_000, dtype=float))}))
# scheduling jitter before a file gets its name widens any check-then-rename window
for name in ("link", "replace", "rename"):
    real = getattr(os, name)
    def delayed(*args, _real=real, **kwargs):
        time.sleep(random.random() * 0.01)
        return _real(*args, **kwargs)
    setattr(os, name, delayed)

def racer(barrier, path, queue, tag):
    random.seed(os.getpid())
    barrier.wait(timeout=30)
    dt.x.attrs["writer"] = tag
    try:
        io.save(dt, path)
        queue.put((tag, "ok"))
    except FileExistsError:
        queue.put((tag, "exists"))
    except BaseException as error:
        queue.put((tag, repr(error)))

context = multiprocessing.get_context("fork")
outcomes = []
for index in range(rounds):
    path = os.path.join(folder, f"run{index}.nc")
    barrier, queue = context.Barrier(2), context.Queue()
    writers = [context.Process(target=racer, args=(barrier, path, queue, tag)) for tag in (0, 1)]
    for writer in writers:
        writer.start()
    results = sorted(queue.get(timeout=60) for _ in writers)
    for writer in writers:
        writer.join(timeout=60)
    winners = [tag for tag, outcome in results if outcome == "ok"]
    kept = int(xr.open_dataset(path, engine="h5netcdf").x.attrs["writer"]) if winners else None
    outcomes.append({"results": results, "winners": winners, "kept": kept})
print(json.dumps(outcomes))
"""


def test_racing_writers_exactly_one_wins(tmp_path):
    """Two forked processes save to the same new path at once, 20 rounds: always one winner."""
    result = subprocess.run(
        [sys.executable, "-c", RACE_SCRIPT, str(tmp_path), io.__file__, "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 20
    for index, outcome in enumerate(outcomes):
        outcomes_text = f"round {index}: {outcome['results']}"
        assert len(outcome["winners"]) == 1, outcomes_text
        assert sorted(text for _, text in outcome["results"]) == ["exists", "ok"], outcomes_text
        assert outcome["kept"] == outcome["winners"][0], outcomes_text  # the winner's file stays
    assert sorted(_files(tmp_path)) == sorted(f"run{index}.nc" for index in range(20))


def test_a_file_that_appears_during_the_save_is_never_replaced(tree, tmp_path, monkeypatch):
    """The deterministic form of the race: another writer creates ``path`` mid-save."""
    path = tmp_path / "run.nc"
    real_fsync = os.fsync

    def fsync(fd):
        real_fsync(fd)
        path.write_bytes(b"the other writer's file")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(FileExistsError, match=r"run\.nc.*exists"):
        io.save(tree, path)
    assert path.read_bytes() == b"the other writer's file"
    assert _files(tmp_path) == ["run.nc"]
    # with overwrite=True the save replaces it
    io.save(tree, path, overwrite=True)
    xr.testing.assert_identical(io.load(path), tree)
    assert _files(tmp_path) == ["run.nc"]


def test_without_hard_links_the_save_still_refuses_a_file_that_appeared(
    tree, tmp_path, monkeypatch
):
    def link(source, target):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", link)
    path = tmp_path / "run.nc"
    io.save(tree, path)
    xr.testing.assert_identical(io.load(path), tree)
    assert _files(tmp_path) == ["run.nc"]
    real_fsync = os.fsync

    def fsync(fd):
        real_fsync(fd)
        (tmp_path / "new.nc").write_bytes(b"other")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(FileExistsError, match=r"new\.nc"):
        io.save(tree, tmp_path / "new.nc")
    assert (tmp_path / "new.nc").read_bytes() == b"other"
    assert _files(tmp_path) == ["new.nc", "run.nc"]


def test_temporary_file_is_named_for_its_process_and_locked(tree, tmp_path, monkeypatch):
    seen = []
    real_fsync = os.fsync

    def fsync(fd):
        seen.extend(_files(tmp_path))
        probe = os.open(tmp_path / seen[0], os.O_RDONLY)
        try:  # the writer holds the file's lock, so no clean-up takes it for an orphan
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    io.save(tree, tmp_path / "run.nc")
    assert len(seen) == 1
    # short, whatever the target's name: any name the filesystem takes can be saved
    assert re.fullmatch(rf"\.pgm-rl-{os.getpid()}-[0-9a-f]{{8}}\.tmp", seen[0]), seen
    assert _files(tmp_path) == ["run.nc"]
    mode = os.stat(tmp_path / "run.nc").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # the usual mode of a new file


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_orphans_of_dead_saves_are_removed_and_live_ones_kept(tree, tmp_path):
    dead = _dead_pid()
    orphan = tmp_path / f".pgm-rl-{dead}-0badcafe.tmp"
    old_style = tmp_path / f".other.nc.pgm-rl-{dead}-feedbeef.tmp"  # earlier versions' names
    live = tmp_path / f".pgm-rl-{os.getpid()}-1234abcd.tmp"  # a save in progress here
    locked = tmp_path / f".pgm-rl-{dead}-5eed5eed.tmp"  # pid unknown here, lock held
    unrelated = tmp_path / ".run.nc.backup"
    for file in (orphan, old_style, live, locked, unrelated):
        file.write_bytes(b"x" * 100)
    handle = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        io.save(tree, tmp_path / "run.nc")
        # the next save into the folder removed the orphans of dead saves only
        assert _files(tmp_path) == sorted([live.name, locked.name, unrelated.name, "run.nc"])
        assert io.remove_orphans(tmp_path) == []
    finally:
        os.close(handle)
    assert io.remove_orphans(tmp_path) == [str(locked)]  # its lock is gone now
    assert _files(tmp_path) == sorted([live.name, unrelated.name, "run.nc"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        io.remove_orphans(tmp_path / "nowhere")


KILLED_SCRIPT = """
import importlib.util, os, sys, time
import numpy as np
import xarray as xr
spec = importlib.util.spec_from_file_location("pgm_rl_io", sys.argv[2])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
def fsync(fd):  # the temporary file is written: wait here to be killed
    print("written", flush=True)
    time.sleep(60)
os.fsync = fsync
io.save(xr.DataTree(xr.Dataset({"x": ("n", np.arange(50_000, dtype=float))})), sys.argv[1])
"""


def test_a_save_killed_outright_leaves_an_orphan_that_the_next_save_removes(tree, tmp_path):
    path = tmp_path / "run.nc"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT, str(path), io.__file__],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "written", child.stderr.read()
    finally:
        child.kill()
        child.wait(timeout=30)
    orphans = _files(tmp_path)
    assert len(orphans) == 1 and f".pgm-rl-{child.pid}-" in orphans[0]
    assert os.path.getsize(tmp_path / orphans[0]) > 100_000
    io.save(tree, path)
    assert _files(tmp_path) == ["run.nc"]
    xr.testing.assert_identical(io.load(path), tree)


# ----------------------------------------------------------------------------- issue 17


def test_only_regular_files_are_replaced(tree, tmp_path):
    """A FIFO, a symbolic link (to a file, or dangling) or a device is refused, even with
    overwrite=True, and left as it was; before, os.replace put a regular file in its place."""
    fifo = tmp_path / "fifo.nc"
    os.mkfifo(fifo)
    target = tmp_path / "target.nc"
    target.write_bytes(b"precious")
    link = tmp_path / "link.nc"
    link.symlink_to(target.name)
    dangling = tmp_path / "dangling.nc"
    dangling.symlink_to("nowhere.nc")
    for path, kind in [
        (fifo, "a FIFO"),
        (link, "a symbolic link"),
        (dangling, "a symbolic link"),
    ]:
        for overwrite in (True, False):
            with pytest.raises(ValueError, match=f"is {kind}.*not a regular file"):
                io.save(tree, path, overwrite=overwrite)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.readlink(link) == "target.nc" and target.read_bytes() == b"precious"
    assert os.readlink(dangling) == "nowhere.nc"
    assert _files(tmp_path) == ["dangling.nc", "fifo.nc", "link.nc", "target.nc"]


def test_a_fifo_that_appears_during_the_save_is_not_replaced(tree, tmp_path, monkeypatch):
    path = tmp_path / "run.nc"
    real_fsync = os.fsync

    def fsync(fd):
        real_fsync(fd)
        os.mkfifo(path)  # appears after the checks, before the rename

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ValueError, match="is a FIFO"):
        io.save(tree, path, overwrite=True)
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert _files(tmp_path) == ["run.nc"]  # no temporary file left


def test_names_up_to_the_filesystem_limit_are_saved_longer_ones_refused_first(
    tree, tmp_path, monkeypatch
):
    """255 bytes is the usual NAME_MAX: a 250-byte name failed before (the temporary file's
    name was the target's plus 26 bytes); longer names and "" are refused before serialising."""
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    for length in (230, name_max):
        path = tmp_path / ("r" * (length - 3) + ".nc")
        io.save(tree, path)
        xr.testing.assert_identical(io.load(path), tree)
        os.remove(path)

    def never(*args, **kwargs):
        raise AssertionError("serialised before the name was checked")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", never)
    too_long = tmp_path / ("r" * (name_max - 2) + ".nc")
    with pytest.raises(ValueError, match=rf"name of {name_max + 1} bytes.*at most {name_max}"):
        io.save(tree, too_long)
    with pytest.raises(ValueError, match="is empty"):
        io.save(tree, "")
    assert _files(tmp_path) == []


def test_orphan_staging_folders_of_dead_processes_are_removed(tmp_path):
    """Before, pgm-rl's staging folders (.pgm-rl-pictures-XXXX) had no pid and a SIGKILLed
    command's folder stayed forever; now the next save or command in that folder removes it."""
    dead = _dead_pid()
    orphan = tmp_path / f".pgm-rl-pictures-{dead}-abc_12xy"
    live = tmp_path / f".pgm-rl-pictures-{os.getpid()}-zzzz9999"
    locked = tmp_path / f".pgm-rl-pictures-{dead}-lock0000"
    for folder in (orphan, live, locked):
        folder.mkdir()
        (folder / "policy.png").write_bytes(b"png")
    handle = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert io.remove_orphans(tmp_path) == [str(orphan)]
    finally:
        os.close(handle)
    staging, lock = io._new_staging_folder(tmp_path)  # what the command does: removes orphans
    try:
        assert re.fullmatch(
            rf"\.pgm-rl-pictures-{os.getpid()}-[0-9a-z_]+", os.path.basename(staging)
        )
        assert _files(tmp_path) == sorted([live.name, os.path.basename(staging)])
        assert io.remove_orphans(tmp_path) == []  # our own, locked: kept
    finally:
        shutil.rmtree(staging)
        os.close(lock)
