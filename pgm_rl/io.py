"""Save and load DataTrees as netCDF (h5netcdf): atomic, and never over an existing file unless asked.

:func:`save` writes to a temporary file in the target's folder and renames it over the target
(``os.replace``, atomic on POSIX), so an interrupted save leaves either the old file or none,
never a partial one.
"""

import os
import tempfile

import xarray as xr

__all__ = ["load", "save"]


def save(dt, path, overwrite=False):
    """Write ``dt`` to ``path`` as netCDF-4 (h5netcdf engine).

    Parameters
    ----------
    dt : xarray.DataTree
    path : str or os.PathLike
        Target file; its folder must exist.
    overwrite : bool, default False
        Replace an existing file. Without it an existing ``path`` raises ``FileExistsError``
        and is left untouched.

    Returns
    -------
    str
        The path written.
    """
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree, got {type(dt).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path {path!r} is a folder, not a file")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} of path {path!r} does not exist")
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    os.close(handle)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0o600; use the usual mode
        dt.to_netcdf(temporary, engine="h5netcdf", mode="w")
        if os.path.lexists(path) and not overwrite:  # appeared while writing
            raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it")
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.remove(temporary)
        raise
    return path


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load(path):
    """Read a DataTree written by :func:`save`, fully into memory; the file is closed on return."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} does not exist or is not a file")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as dt:
            return dt.load().copy()
    except OSError as error:  # h5py: not an HDF5/netCDF-4 file, or truncated
        raise ValueError(f"{path!r} is not a readable netCDF-4 file ({error})") from None
