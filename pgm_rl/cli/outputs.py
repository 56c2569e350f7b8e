"""The output transaction of a command: ``--out`` and ``--plots`` checked first, written last.

Every output is checked before any work is done: ``--out`` and the pictures must be regular
files or missing (never folders, symbolic links, FIFOs or devices), must not exist
(``--overwrite`` replaces them; untouched until then), must have names the filesystem takes and
must be creatable where they go (a probe file is created and removed there, which catches
read-only filesystems). An existing ``--plots`` folder is fine: the pictures that would be
replaced are refused, all named in one line, except that ``report`` redraws the pictures
``sample`` or ``report`` drew of the same run (each PNG carries a digest of its run), which
loses nothing. Outputs are written only at the end, as a whole: the pictures are drawn into a
hidden folder and moved into place after ``--out`` is saved, and a command that fails (or is
interrupted) removes whatever it had created, so it leaves nothing new.
"""

import contextlib
import hashlib
import os
import shutil
import struct
import tempfile
import zlib

import numpy as np

from pgm_rl import io

__all__ = ["Outputs", "draw_plots", "run_digest"]


def _check_outputs(overwrite, out=None, folder=None, pictures=(), redraw=False):
    """Refuse, before any work, outputs this command could not write.

    ``out`` (``--out``) must be missing or a regular file (never a folder, a symbolic link, a
    FIFO or a device, even with ``--overwrite``), must not exist without ``--overwrite``, must
    have a name the filesystem takes (not empty, at most NAME_MAX bytes), and its folder must
    exist and take a new file; ``folder`` (``--plots``) must be a folder or be creatable, with
    its ``pictures`` (file names) checked as ``out``. "Takes a new file" is tried: a probe file
    is created and removed, which also catches a read-only filesystem and root-owned folders
    that permission bits miss.

    An existing ``folder`` is fine; the pictures this command would replace are refused all
    in one line, except (``redraw``, for ``report``) those pgm-rl drew from a run
    (:func:`_png_stamp`): their paths are returned, for :meth:`Outputs.same_run` to accept
    once the run is read (redrawing the same run loses nothing).
    """
    probed = set()
    if folder is not None:
        problem = "is empty: give a folder" if folder == "" else io._name_problem(folder)
        if problem is not None:
            raise ValueError(f"--plots {io._shown(folder)} {problem}")
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(f"--plots {folder!r} exists and is not a folder")
        _check_writable(_existing_ancestor(folder), "--plots", folder, probed)
        paths = [os.path.join(folder, name) for name in pictures]
        for path in paths:
            _check_file("--plots", path, True)  # a name, a file, not a folder or a device
        taken = [path for path in paths if os.path.lexists(path) and not overwrite]
        stamped = [path for path in taken if redraw and _png_stamp(path) is not None]
        _refuse_existing([path for path in taken if path not in stamped])
    if out is not None:
        _check_file("--out", out, overwrite)
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise FileNotFoundError(
                f"the folder of --out {out!r} does not exist or is not a folder"
            )
        _check_writable(parent, "--out", out, probed)
    return stamped if folder is not None else []


def _refuse_existing(paths, why=""):
    """A ``FileExistsError`` naming every picture in ``paths`` (none: nothing to refuse)."""
    if paths:
        shown = ", ".join(repr(path) for path in paths)
        them = "it" if len(paths) == 1 else "them"
        raise FileExistsError(
            f"--plots {shown} exist{'s' if len(paths) == 1 else ''}{why}; pass --overwrite to "
            f"replace {them} (or give another folder)"
        )


_STAMP = b"pgm-rl run"  # the PNG tEXt key of the run a picture of sample or report shows


def _png_stamp(path):
    """The run digest (:func:`run_digest`) a picture drawn by pgm-rl carries, else None.

    Reads the PNG chunk headers up to the image end: any other file (not a PNG, or a PNG
    without the stamp, e.g. one edited and saved by another program) gives None.
    """
    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        while len(header := handle.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                return None
            if kind != b"tEXt":
                handle.seek(length + 4, os.SEEK_CUR)
                continue
            key, _, value = handle.read(length).partition(b"\0")
            if key == _STAMP:
                return value.decode("ascii", "replace")
            handle.seek(4, os.SEEK_CUR)
    return None


def _stamp_png(path, digest):
    """Add the tEXt chunk ``pgm-rl run: digest`` before the IEND chunk of the PNG ``path``."""
    with open(path, "rb") as handle:
        data = handle.read()
    end = data.rindex(b"IEND") - 4  # the IEND chunk: length, type, CRC (12 bytes)
    body = b"tEXt" + _STAMP + b"\0" + digest.encode("ascii")
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    with open(path, "wb") as handle:
        handle.write(data[:end] + chunk + data[end:])


def run_digest(dt):
    """sha256 (hex) of a run's draws, problem and beta: equal for a run and its saved file."""
    digest = hashlib.sha256(repr((int(dt.attrs["horizon"]), float(dt.attrs["beta"]))).encode())
    for group in ("posterior", "constant_data"):
        for name in sorted(dt[group].data_vars):
            array = np.ascontiguousarray(dt[group][name].values)
            array = array.astype(np.int64 if array.dtype.kind in "biu" else np.float64)
            digest.update(f"{group}/{name}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _check_file(option, path, overwrite):
    problem = io._name_problem(path)
    if problem is not None:
        raise ValueError(f"{option} {io._shown(path)} {problem}")
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise IsADirectoryError(f"{option} {path!r} is a folder, not a file")
    kind = io._node_kind(path)
    if kind is not None:
        raise ValueError(f"{option} {path!r} is {kind}: pgm-rl writes and replaces only files")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{option} {path!r} exists; pass --overwrite to replace it")


def _existing_ancestor(folder):
    """``folder`` or its nearest existing ancestor, which must be a folder."""
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"--plots {folder!r} cannot be created: {path!r} is not a folder")
    return path


def _check_writable(directory, option, path, probed):
    """Create and remove a probe file in ``directory``; an ``OSError`` naming ``option``."""
    if directory in probed:
        return
    try:
        handle, probe = tempfile.mkstemp(prefix=".pgm-rl-probe-", dir=directory)
    except OSError as error:
        cause = error.strerror or str(error)
        raise type(error)(
            f"{option} {path!r} cannot be written: no new file can be created in {directory!r} "
            f"({cause})"
        ) from None
    os.close(handle)
    os.unlink(probe)
    probed.add(directory)


def _plot_names(folder):
    """The file names ``plots.write_plots`` may write (none without --plots)."""
    if folder is None:
        return []
    from pgm_rl.plots import PLOT_FILES  # (loads matplotlib: only with --plots)

    return list(PLOT_FILES)


class Outputs:
    """This command's output files, checked before any work and written as a whole at the end.

    Entering checks them (:func:`_check_outputs`). Pictures are drawn into a hidden staging
    folder (:meth:`staging`) on the filesystem of ``--plots``; :meth:`commit` then saves
    ``--out`` (atomically, :func:`pgm_rl.io.save`) and moves the pictures into place. When
    anything fails (also Ctrl-C) the staging folder goes, and so does whatever this command had
    already created, so a failed command leaves nothing new behind. Files replaced with
    ``--overwrite`` are replaced only in :meth:`commit`, after all the work succeeded.
    """

    def __init__(self, args, pictures=None, redraw=False):
        self.out = getattr(args, "out", None)
        self.folder = args.plots
        self.overwrite = args.overwrite
        pictures = _plot_names(self.folder) if pictures is None else pictures
        # pgm-rl's pictures of some run (redraw): replaced only if same_run says it is this one
        self._stamped = _check_outputs(self.overwrite, self.out, self.folder, pictures, redraw)
        self._redrawn = set()
        self._staging = None
        self._staging_lock = None  # the open staging folder, locked (see pgm_rl.io)
        self._created = []

    def __enter__(self):
        return self

    def same_run(self, digest):
        """Accept the existing pictures that show the run of ``digest`` (:func:`run_digest`):
        redrawing them loses nothing; refuse (before any drawing) those of another run."""
        other = [path for path in self._stamped if _png_stamp(path) != digest]
        _refuse_existing(other, " (pgm-rl's pictures of another run)")
        self._redrawn = set(self._stamped)

    def staging(self):
        """The hidden folder to draw the pictures into (made on first use)."""
        if self._staging is None:
            base = self.folder if os.path.isdir(self.folder) else _existing_ancestor(self.folder)
            self._staging, self._staging_lock = io._new_staging_folder(base)
        return self._staging

    @contextlib.contextmanager
    def drawing(self):
        """``with outputs.drawing() as folder:`` draw into the staging folder ``folder``; a
        failure to write there (a full disk) is reported as one naming ``--plots``."""
        try:
            yield self.staging()
        except OSError as error:
            cause = error.strerror or str(error)
            raise type(error)(
                f"could not write the pictures of --plots {self.folder!r}: {cause}"
            ) from None

    def commit(self, dt=None, pictures=()):
        """Save ``dt`` to ``--out`` and move ``pictures`` (names in the staging folder) into
        ``--plots``; then print what was written."""
        lines = []
        if self.out is not None and dt is not None:
            existed = os.path.lexists(self.out)
            try:
                io.save(dt, self.out, overwrite=self.overwrite)
            except FileExistsError:  # created by someone else while this command ran
                raise FileExistsError(
                    f"--out {self.out!r} exists (it appeared while this command ran); pass "
                    "--overwrite to replace it"
                ) from None
            if not existed:
                self._created.append(self.out)
            lines.append(f"saved {self.out}")
        if pictures:
            self._make_folder()
            for name in pictures:
                target = os.path.join(self.folder, name)
                existed = os.path.lexists(target)
                _check_file("--plots", target, True)  # still a regular file, if any
                if existed and not self.overwrite and target not in self._redrawn:
                    raise FileExistsError(
                        f"--plots {target!r} exists (it appeared while this command ran); pass "
                        "--overwrite to replace it"
                    )
                os.replace(os.path.join(self._staging, name), target)
                if not existed:
                    self._created.append(target)
                redrawn = " (redrawn: the same run)" if target in self._redrawn else ""
                lines.append(f"wrote {target}{redrawn}")
        for line in lines:
            print(line)

    def _make_folder(self):
        """Create ``--plots`` and its missing parents, remembering each for the clean-up."""
        missing = []
        path = os.path.abspath(self.folder)
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for path in reversed(missing):
            os.mkdir(path)
            self._created.append(path)

    def __exit__(self, kind, error, traceback):
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            os.close(self._staging_lock)
        if kind is not None:  # a failure: take back what this command created
            for path in reversed(self._created):
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        os.rmdir(path)
                    else:
                        os.unlink(path)
                except OSError:
                    pass
        return False


def draw_plots(dt, outputs):
    """Draw the standard pictures into the staging folder; their names (none without --plots)."""
    if outputs.folder is None:
        return []
    from pgm_rl.plots import write_plots  # (loads matplotlib: only with --plots)

    digest = run_digest(dt)
    with outputs.drawing() as folder:
        paths = write_plots(dt, folder)
        for path in paths:  # what the picture shows: report may redraw it over itself
            _stamp_png(path, digest)
    return [os.path.basename(path) for path in paths]
