"""Save and load DataTrees as netCDF (h5netcdf): atomic, and never over an existing file unless asked.

:func:`save` serialises the tree in memory first, writes the bytes to a temporary file in the
target's folder, flushes them to disk, and only then gives the file its name:

* ``overwrite=False``: ``os.link`` of the finished temporary file onto the target, which fails if
  the target exists. Of several processes saving to the same new path exactly one succeeds; the
  others get ``FileExistsError`` and the winner's file is never replaced.
* ``overwrite=True``: ``os.replace`` (atomic on POSIX), so a reader sees the old file or the new
  one, never a partial one.

A failed save (a full disk, a read-only folder, an interrupt) removes its temporary file and raises
one ``OSError`` that names the target and the cause; ``KeyboardInterrupt`` is re-raised after the
clean-up. Because HDF5 only ever writes to memory, a disk error cannot leave an HDF5 file open in a
broken state (h5netcdf 1.8 / h5py 3.16 then segfault when the garbage collector closes it).

Only regular files are written or replaced: a ``path`` that is a symbolic link, a FIFO, a device
or a socket is refused (also with ``overwrite=True``), as are an empty path and names longer than
the filesystem takes; all before the tree is serialised.

Temporary files are named ``.pgm-rl-<pid>-<random>.tmp`` (short, so that any name the filesystem
takes can be saved) and are locked (``flock``) by the process writing them. The ``pgm-rl``
command draws its pictures into staging folders ``.pgm-rl-pictures-<pid>-<random>``, locked the
same way (:func:`_new_staging_folder`). A process killed outright (SIGKILL, power loss) leaves one
behind; the next :func:`save` into the same folder removes such orphans, and
:func:`remove_orphans` removes those of any folder. Only orphans whose writer is gone are
removed: the process ``<pid>`` is not alive on this machine and no one holds the lock.
"""

import errno
import os
import re
import secrets
import shutil
import stat
import tempfile

import xarray as xr

try:
    import fcntl
except ImportError:  # not POSIX: no locks, the pid check alone decides
    fcntl = None

__all__ = ["load", "remove_orphans", "save"]

_TEMP_PREFIX = ".pgm-rl-"
# also ``.<target name>.pgm-rl-<pid>-<random>.tmp``, the names of earlier versions
_TEMP = re.compile(r"^\.(?:.+\.)?pgm-rl-(?P<pid>[0-9]+)-[0-9a-f]+\.tmp$")
_STAGING_PREFIX = ".pgm-rl-pictures-"
_STAGING = re.compile(r"^\.pgm-rl-pictures-(?P<pid>[0-9]+)-[0-9a-z_]+$")
_CHUNK = 1 << 22  # bytes per os.write call
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def save(dt, path, overwrite=False):
    """Write ``dt`` to ``path`` as netCDF-4 (h5netcdf engine), atomically.

    The tree is serialised in memory (so a save needs memory for one copy of the file), written to
    a temporary file ``.pgm-rl-<pid>-<random>.tmp`` next to ``path``, flushed to disk, and then
    linked (``overwrite=False``) or renamed (``overwrite=True``) onto ``path``. Orphans of killed
    saves in that folder are removed first (see :func:`remove_orphans`).

    Parameters
    ----------
    dt : xarray.DataTree
    path : str or os.PathLike
        Target file: missing, or a regular file; its folder must exist.
    overwrite : bool, default False
        Replace an existing regular file. Without it an existing ``path`` raises
        ``FileExistsError`` and is left untouched, also when another process creates ``path``
        during the save: of concurrent saves to the same new path exactly one succeeds.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    TypeError
        ``dt`` is not a DataTree or ``overwrite`` is not a bool.
    ValueError
        ``path`` is empty, has a name longer than its filesystem takes, or exists and is neither a
        regular file nor a folder (a symbolic link, a FIFO, a device, a socket); nothing is
        touched.
    IsADirectoryError
        ``path`` is a folder.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    OSError
        Any failure to write (for example ``errno.ENOSPC``, a full disk): the message names
        ``path`` and the cause; no temporary file is left and an existing ``path`` is unchanged.
    """
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree, got {type(dt).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    problem = _name_problem(path)
    if problem is not None:
        raise ValueError(f"path {_shown(path)} {problem}")
    kind = _node_kind(path)
    if kind == "a folder":
        raise IsADirectoryError(f"path {path!r} is a folder, not a file")
    if kind is not None:
        raise ValueError(f"path {path!r} is {kind}, not a regular file: save writes only files")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(_exists_message(path))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} of path {path!r} does not exist")
    try:
        _remove_orphans(folder)
    except OSError:
        pass  # best effort: an unreadable folder fails below with a clear message
    # HDF5 writes to memory only; disk errors are then ours to handle, never h5py's.
    data = dt.to_netcdf(engine="h5netcdf")
    temporary = os.path.join(folder, f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.tmp")
    handle = None
    try:
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            _lock(handle)
            _write_all(handle, data)
            os.fsync(handle)
        except OSError as error:
            raise _save_error(path, error) from None
        finally:
            del data
        _publish(temporary, path, overwrite)
    except BaseException:  # also KeyboardInterrupt: clean up, then re-raise it
        if handle is not None:
            _silently(os.close, handle)
            handle = None
        _silently(os.unlink, temporary)
        raise
    finally:
        if handle is not None:
            _silently(os.close, handle)
    return path


def _publish(temporary, path, overwrite):
    """Give the finished ``temporary`` the name ``path``; ``temporary`` is gone on success."""
    try:
        if overwrite:
            kind = _node_kind(path)  # again: something else may have appeared there meanwhile
            if kind is not None:
                raise ValueError(
                    f"path {path!r} is {kind}, not a regular file: save writes only files"
                )
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)  # exclusive: fails if path exists
        except FileExistsError:
            raise FileExistsError(_exists_message(path)) from None
        except OSError as error:
            if error.errno not in _NO_HARD_LINKS:
                raise
            _publish_without_links(temporary, path)
            return
        _silently(os.unlink, temporary)
    except FileExistsError:
        raise
    except OSError as error:
        raise _save_error(path, error) from None


def _publish_without_links(temporary, path):
    """``overwrite=False`` on a filesystem without hard links: claim ``path`` with an exclusive
    create, then rename over the claim. A save killed in between leaves an empty ``path``."""
    try:
        claim = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise FileExistsError(_exists_message(path)) from None
    os.close(claim)
    try:
        os.replace(temporary, path)
    except BaseException:
        _silently(os.unlink, path)
        raise


def _lock(handle):
    """Hold an exclusive ``flock`` on the open temporary file: "a save is writing this"."""
    if fcntl is None:
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # a filesystem without locks: the pid in the name still protects the file


def _write_all(handle, data):
    """``os.write`` all of ``data`` (a bytes-like object) to the file descriptor ``handle``."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        written = os.write(handle, view[done : done + _CHUNK])
        if written <= 0:  # pragma: no cover - a regular file never does this
            raise OSError(errno.EIO, "write made no progress")
        done += written


def _save_error(path, error):
    """One ``OSError`` (of the errno's subclass) naming the target and the cause."""
    cause = error.strerror or str(error) or type(error).__name__
    message = f"could not save {path!r}: {cause}"
    if error.errno is None:
        return OSError(message)
    kind = type(OSError(error.errno, cause))  # e.g. PermissionError for EACCES
    result = kind(message)
    result.errno = error.errno  # strerror stays None: str() is the message, no "[Errno N]"
    return result


def _exists_message(path):
    return f"{path!r} exists; pass overwrite=True to replace it"


def _silently(function, *args):
    try:
        function(*args)
    except OSError:
        pass


def remove_orphans(folder):
    """Remove what killed :func:`save` calls and ``pgm-rl`` commands left in ``folder``.

    Temporary files ``.pgm-rl-<pid>-<random>.tmp`` (``.<name>.pgm-rl-<pid>-<random>.tmp`` from
    earlier versions) and picture staging folders ``.pgm-rl-pictures-<pid>-<random>`` are
    orphans when the process ``<pid>`` is not alive on this machine and no process holds their
    lock. Those of saves and commands still running (here, or on another machine sharing the
    folder and holding the lock) are kept.

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    list of str
        The paths removed.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} does not exist or is not a folder")
    return _remove_orphans(folder)


def _remove_orphans(folder):
    removed = []
    for entry in os.listdir(folder):
        match = _TEMP.match(entry) or _STAGING.match(entry)
        if match is None or _alive(int(match["pid"])):
            continue
        candidate = os.path.join(folder, entry)
        is_staging = match.re is _STAGING
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            continue
        if not (stat.S_ISDIR(mode) if is_staging else stat.S_ISREG(mode)) or _locked(candidate):
            continue
        try:
            if is_staging:
                shutil.rmtree(candidate)
            else:
                os.unlink(candidate)
        except OSError:  # gone already, or not ours to remove
            continue
        removed.append(candidate)
    return removed


def _new_staging_folder(folder):
    """A new hidden staging folder ``.pgm-rl-pictures-<pid>-<random>`` in ``folder``, locked:
    ``(path, handle)``; close ``handle`` (which releases the lock) after removing the folder.
    Orphans of dead processes in ``folder`` are removed first (best effort)."""
    try:
        _remove_orphans(folder)
    except OSError:
        pass
    path = tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=folder)
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        raise
    _lock(handle)
    return path, handle


def _node_kind(path):
    """What ``path`` is when it exists and is not a regular file: ``"a folder"``, ``"a symbolic
    link"``, ``"a FIFO"``, ... (None for a regular file or nothing; the link itself counts)."""
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _name_problem(path):
    """Why no file can be made at ``path`` whatever the permissions, as the end of a sentence
    about it ("is empty", "has a name of 300 bytes; ..."), or None.

    The limits are the filesystem's (``pathconf``: NAME_MAX per name, PATH_MAX for the whole
    absolute path, typically 255 and 4096 bytes), read at ``path``'s nearest existing folder.
    """
    if path == "":
        return "is empty: give a file name"
    absolute = os.path.abspath(path)
    existing = absolute
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    name_max = _pathconf(existing, "PC_NAME_MAX", 255)
    path_max = _pathconf(existing, "PC_PATH_MAX", 4096)
    encoded = os.fsencode(absolute)
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > name_max:
        return f"has a name of {longest} bytes; the filesystem takes at most {name_max}"
    if len(encoded) >= path_max:
        return (
            f"is {len(encoded)} bytes long as an absolute path; the filesystem takes at most "
            f"{path_max - 1}"
        )
    return None


def _pathconf(folder, name, default):
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):
        return default
    return value if value > 0 else default


def _shown(path, width=60):
    """``repr(path)``, shortened in the middle beyond ``width`` characters."""
    text = repr(path)
    if len(text) <= width:
        return text
    return f"{text[: width // 2]}...{text[-width // 2 :]}"


def _alive(pid):
    """Whether a process ``pid`` exists on this machine (our own pid counts as alive)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, OverflowError):
        return False
    return True


def _locked(candidate):
    """Whether some process holds the ``flock`` of ``candidate`` (True when unsure)."""
    if fcntl is None:
        return False
    try:
        handle = os.open(candidate, os.O_RDONLY)
    except FileNotFoundError:
        return True  # gone already: nothing to remove
    except OSError:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(handle)  # also releases our lock
    return False


def load(path):
    """Read a DataTree written by :func:`save`, fully into memory; the file is closed on return."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} does not exist or is not a file")
    try:
        # phony_dims named: HDF5 datasets without netCDF dimensions (files that are not ours)
        # then read without h5netcdf's UserWarning about its default
        with xr.open_datatree(path, engine="h5netcdf", phony_dims="access") as dt:
            return dt.load().copy()
    except OSError as error:  # h5py: not an HDF5/netCDF-4 file, or truncated
        raise ValueError(f"{path!r} is not a readable netCDF-4 file ({error})") from None
