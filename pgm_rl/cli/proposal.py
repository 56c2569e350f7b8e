"""Policies saved by ``pgm-rl fit --out``: the fingerprint of their world, and loading one as
the ``--proposal`` of ``sample`` or ``smc``."""

import hashlib
import types

import numpy as np

from pgm_rl import io, smc
from pgm_rl.cli.common import one_line


def env_fingerprint(env):
    """sha256 of the MDP's dynamics, rewards and start distribution (hex)."""
    digest = hashlib.sha256()
    for array in (env.outcome_states, env.outcome_probs, env.outcome_rewards, env.start_probs):
        array = np.ascontiguousarray(np.asarray(array))
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float64)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_proposal(path, env, horizon):
    """A policy saved by ``fit --out``, checked against ``env`` and ``horizon``:
    ``(object with .log_policy (T, S, A), one line describing it)``; else a one-line error."""
    what = f"--proposal {path!r}"
    dt = io.load(path)
    data = dt.to_dataset()
    if "log_policy" not in data:
        raise ValueError(
            f"{what} holds no policy (no log_policy variable); write one with 'pgm-rl fit --out'"
        )
    log_policy = np.asarray(data["log_policy"].values, np.float64)
    fitted_on = dt.attrs.get("env", "another environment")
    expected = (horizon, env.n_states, env.n_actions)
    if log_policy.ndim != 3 or log_policy.shape[1:] != expected[1:]:
        raise ValueError(
            f"{what} has shape {log_policy.shape}, not (T, S, A) = (T, {env.n_states}, "
            f"{env.n_actions}): it was fit on {fitted_on}, not on this environment"
        )
    if dt.attrs.get("env_fingerprint") != env_fingerprint(env):
        raise ValueError(
            f"{what} was fit on {fitted_on}, not on this environment (its dynamics, rewards or "
            "start differ)"
        )
    if log_policy.shape[0] != horizon:
        raise ValueError(
            f"{what} was fit for horizon T={log_policy.shape[0]}, not --horizon {horizon}"
        )
    proposal = types.SimpleNamespace(
        log_policy=log_policy, beta=float(dt.attrs.get("beta", float("nan")))
    )
    try:
        smc.check_proposal(proposal, env, horizon)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: {one_line(error)}") from None
    attrs = dt.attrs
    about = (
        f"{path} ({attrs.get('objective', '?')} fit, {attrs.get('parametrization', '?')}, "
        f"beta={float(attrs.get('beta', float('nan'))):g}, ELBO "
        f"{float(attrs.get('elbo', float('nan'))):.6g})"
    )
    return proposal, about
