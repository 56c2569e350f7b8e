"""Test helpers: brute-force posteriors and tolerances derived from the effective sample size."""

import json
import math
import os
import subprocess
import sys

import arviz_stats
import jax
import numpy as np
from numpyro.infer import MCMC
from scipy.special import logsumexp

import pgm_rl
from pgm_rl import rollout


def enumerate_posterior(env, horizon, beta):
    """Brute force: weigh all A^T action sequences by prior * exp(beta * return)."""
    n_actions = env.n_actions
    actions = np.indices((n_actions,) * horizon).reshape(horizon, -1).T  # (A^T, T)
    states, rewards = (np.asarray(x) for x in rollout(env, actions))
    returns = rewards.sum(axis=1)
    log_w = -horizon * math.log(n_actions) + beta * returns
    log_z = float(logsumexp(log_w))
    w = np.exp(log_w - log_z)
    state_marginals = np.stack(
        [np.bincount(states[:, t], weights=w, minlength=env.n_states) for t in range(horizon + 1)]
    )
    action_marginals = np.stack(
        [np.bincount(actions[:, t], weights=w, minlength=n_actions) for t in range(horizon)]
    )
    # P(s_t = s, a_t = a), for the policy pi_t(a | s) = P(s_t = s, a_t = a) / P(s_t = s)
    joint = np.stack(
        [
            np.bincount(
                states[:, t] * n_actions + actions[:, t],
                weights=w,
                minlength=env.n_states * n_actions,
            ).reshape(env.n_states, n_actions)
            for t in range(horizon)
        ]
    )
    return {
        "actions": actions,
        "log_z": log_z,
        "log_prob": log_w - log_z,
        "state_marginals": state_marginals,
        "action_marginals": action_marginals,
        "joint": joint,
        "expected_return": float(np.sum(w * returns)),
    }


def expected_tv(marginals, num_effective):
    """Expected mean-over-steps TV of empirical state marginals from ``num_effective`` iid draws.

    Per state, ``|p_hat - p|`` is about half-normal with sd ``sqrt(p (1 - p) / n)``, so its mean
    is ``sqrt(2 p (1 - p) / (pi n))``; the TV of a step is half the sum over states.
    ``marginals`` (T + 1, S) are the exact ones.
    """
    p = np.asarray(marginals, dtype=float)
    per_step = 0.5 * np.sqrt(2.0 * p * (1.0 - p) / (math.pi * num_effective)).sum(axis=1)
    return float(per_step.mean())


def occupancy_ess(states, n_states):
    """Median bulk ESS and max R-hat of the indicators 1[states[t] == s] that vary.

    ``states`` (chains, draws, T + 1). Returns ``(ess, r_hat)``.
    """
    states = np.asarray(states)
    indicators = (states[..., None] == np.arange(n_states)).astype(float)  # (C, D, T + 1, S)
    varies = indicators.reshape(-1, *indicators.shape[2:]).std(axis=0) > 0
    flat = indicators[..., varies]  # (C, D, K)
    ess = arviz_stats.ess(flat, chain_axis=0, draw_axis=1, method="bulk")
    r_hat = arviz_stats.rhat(flat, chain_axis=0, draw_axis=1)
    return float(np.median(ess)), float(np.max(r_hat))


def run_mcmc(kernel, env, horizon, beta, *, seed=0, warmup=500, draws=2000, chains=4, **kwargs):
    """A finished ``MCMC`` run of ``kernel`` on ``(env, horizon, beta)``, vectorized chains."""
    kwargs.setdefault("chain_method", "vectorized")
    run_kwargs = {"extra_fields": kwargs.pop("extra_fields", ())}
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        progress_bar=False,
        **kwargs,
    )
    mcmc.run(jax.random.key(seed), env, horizon, beta, **run_kwargs)
    return mcmc


def run_cli(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``pgm-rl argv`` run in this process."""
    from pgm_rl import cli

    try:
        code = cli.main([str(arg) for arg in argv])
    except SystemExit as exit_:  # argparse: --help, --version, usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(result, *words):
    """The CLI's answer to bad input: exit 2, one line on stderr naming ``words``."""
    code, _, err = result
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def run_float32_script(script, cwd, *args, timeout=600):
    """Run ``script`` in a fresh interpreter with JAX's default float32; return its last line as JSON.

    The tests force float64 (conftest.py), so float32 behaviour is checked in a child process that
    imports the same pgm_rl and shares the tests' persistent compilation cache.
    """
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    package_root = os.path.dirname(os.path.dirname(pgm_rl.__file__))
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
