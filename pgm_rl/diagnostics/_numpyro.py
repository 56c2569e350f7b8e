"""The NumPyro/ArviZ import-order workaround, run first by :mod:`pgm_rl.diagnostics`."""

import importlib

import numpyro.infer  # before arviz_base: see restore_numpyro_initialization

__all__ = ["restore_numpyro_initialization"]


def restore_numpyro_initialization():
    """Work around a lazy-import clash: arviz_base loads numpyro through lazy_loader, and when
    arviz_base is imported before ``numpyro.infer``, ``numpyro.infer`` ends up without its
    ``initialization`` attribute, which ``arviz_base.from_numpyro`` reads. Run when the package
    is imported, so a user's own ``from_numpyro(mcmc)`` works after it, whatever the order."""
    if not hasattr(numpyro.infer, "initialization"):
        numpyro.infer.initialization = importlib.import_module("numpyro.infer.initialization")


restore_numpyro_initialization()
