"""Variational benchmark: fit_policy "exact" (natural gradient, and plain Adam) against "score"
(SVI), and policy-guided Particle Gibbs / SMC against the bootstrap versions, on the notebook grid.

Table 1 (fits, notebook grid): steps per second (one step = one ELBO and its gradient), timed
on a second call of the jitted loop (the first call's extra time, compilation, is shown), the KL
to the exact posterior after the run, and the warm wall time to KL <= 0.05 (exact objective:
the first step of the exact ELBO trace at or below it; score: exact KL checked every 1/20 of
the run, outside the timing).

Table 2 (samplers, notebook grid, T = 100): 4 chains, vectorized, jitted once and timed on a
second call: ESS/s of the return, R-hat of the return, mean TV of the state marginals to the
exact posterior, for bootstrap Particle Gibbs, guided Particle Gibbs (soft Bellman at beta / 10
as proposal) and the exact iid sampler (the ceiling); and SMC log Z errors in standard errors.

    python benchmarks/bench_variational.py           # 4 chains x 1000 draws
    python benchmarks/bench_variational.py --quick   # 4 chains x 300 draws, shorter fits
"""

import argparse
import time
import warnings

import arviz_stats
import jax
import numpy as np
import optax
from _runner import chains_runner
from jax import random
from numpyro.infer import SVI
from numpyro.optim import optax_to_numpyro

import pgm_rl
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance
from pgm_rl.kernels.particle_gibbs import ParticleGibbs, soft_bellman_proposal
from pgm_rl.smc import run_smc
from pgm_rl.variational import PARAM_NAME, PolicyGradientELBO, exact_runner, policy_guide

TARGET_KL = 0.05


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--chains", type=int, default=4)
    return parser.parse_args()


def warm(fn, *args):
    """``fn(*args)`` after a first call (compilation): (output, seconds of the second call)."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def fit_rows(env, horizon, beta, quick):
    log_z = pgm_rl.solve(env, horizon, beta).log_z
    rows = []
    adam_steps = 1000 if quick else 3000
    for label, optimizer, natural, steps in [
        ("exact, natural gradient (sgd 1.0)", optax.sgd(1.0), True, 100),
        ("exact, natural gradient (sgd 0.5)", optax.sgd(0.5), True, 100),
        ("exact, plain Adam (0.1)", optax.adam(0.1), False, adam_steps),
    ]:
        guide = policy_guide(env, horizon)
        run, params, state = exact_runner(guide, beta, steps, optimizer, natural)
        start = time.perf_counter()
        jax.block_until_ready(run(params, state))
        cold = time.perf_counter() - start
        ((params, _), trace), wall = warm(run, params, state)
        kl = log_z - np.asarray(trace)
        hit = np.flatnonzero(kl <= TARGET_KL)
        to_target = wall * (hit[0] + 1) / steps if hit.size else float("nan")
        rows.append((label, steps, steps / wall, cold - wall, float(kl[-1]), to_target))
    rows.append(score_row(env, horizon, beta, log_z, 500 if quick else 3000))
    return rows


def score_row(env, horizon, beta, log_z, steps):
    """SVI with PolicyGradientELBO, one jitted update per step, timed warm; KL checkpoints."""
    guide = policy_guide(env, horizon)
    svi = SVI(pgm_rl.trajectory_model, guide, optax_to_numpyro(optax.adam(0.05)),
              PolicyGradientELBO(num_particles=64))  # fmt: skip
    state = svi.init(random.key(0), env, horizon, beta)
    update = jax.jit(lambda s: svi.update(s, env, horizon, beta)[0])
    start = time.perf_counter()
    jax.block_until_ready(update(state))
    cold = time.perf_counter() - start
    every, elapsed, to_target, kl = max(steps // 20, 1), 0.0, float("nan"), float("nan")
    for _ in range(0, steps, every):
        start = time.perf_counter()
        for _ in range(every):
            state = update(state)
        jax.block_until_ready(state)
        elapsed += time.perf_counter() - start
        log_pi = guide.log_policy(svi.get_params(state)[PARAM_NAME])
        kl = log_z - pgm_rl.evaluate_policy(env, np.exp(np.asarray(log_pi)), beta).elbo
        if np.isnan(to_target) and kl <= TARGET_KL:
            to_target = elapsed
    label = "score (SVI, RLOO, 64 particles)"
    return label, steps, steps / elapsed, cold, kl, to_target


def sampler_rows(env, horizon, beta, args):
    exact = pgm_rl.solve(env, horizon, beta)
    warmup, draws = (100, 300) if args.quick else (200, 1000)
    rows = []
    for label, kernel in [
        ("particle-gibbs (bootstrap)", ParticleGibbs(pgm_rl.trajectory_model)),
        ("guided particle-gibbs", ParticleGibbs(pgm_rl.trajectory_model,
                                                proposal=soft_bellman_proposal)),
    ]:  # fmt: skip
        if kernel.proposal is not None:  # resolve the callable the way MCMC's build does
            kernel = ParticleGibbs(
                pgm_rl.trajectory_model, proposal=soft_bellman_proposal(env, horizon, beta)
            )
        run = chains_runner(kernel, (env, horizon, beta), warmup, draws)
        jax.block_until_ready(run(random.split(random.key(0), args.chains)))
        start = time.perf_counter()
        samples = jax.block_until_ready(run(random.split(random.key(1), args.chains)))
        wall = time.perf_counter() - start
        rows.append((label, *summarise(samples, exact, env), wall))
    num = args.chains * draws
    exact.sample(random.key(0), num)
    start = time.perf_counter()
    iid = jax.block_until_ready(exact.sample(random.key(1), num))
    wall = time.perf_counter() - start
    fake = {k: np.asarray(v).reshape(args.chains, draws, -1) for k, v in iid.items()}
    rows.append(("exact iid (ceiling)", *summarise(fake, exact, env), wall))
    smc = []
    for label, proposal in [
        ("bootstrap", None),
        ("guided", soft_bellman_proposal(env, horizon, beta)),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_smc(random.key(0), env, horizon, beta, 256, proposal=proposal)
        err = float(result.log_z) - exact.log_z
        smc.append(f"SMC {label}: log Z error {err:.3g} (SE {float(result.log_z_se):.2g})")
    return rows, smc


def summarise(samples, exact, env):
    states = np.asarray(samples["states"])
    returns = np.asarray(samples["rewards"]).sum(-1)
    tv = tv_distance(empirical_state_marginals(states, env.n_states), exact.state_marginals)
    if np.ptp(returns) == 0.0:  # every draw of every chain has one return: ESS undefined
        return float("nan"), 1.0, tv.mean()
    ess = float(arviz_stats.ess(returns, chain_axis=0, draw_axis=1, method="bulk"))
    r_hat = float(arviz_stats.rhat(returns, chain_axis=0, draw_axis=1))
    return ess, r_hat, tv.mean()


def main():
    args = parse_args()
    jax.config.update("jax_enable_x64", True)
    env = pgm_rl.GridWorld.notebook()
    print(f"device: {jax.devices()[0].device_kind}; float64")
    for horizon, beta in [(20, 0.05), (100, 0.05)]:
        rows = fit_rows(env, horizon, beta, args.quick)
        print(f"\nfit_policy, notebook grid, T = {horizon}, beta = {beta} (times warm)")
        print(
            f"{'method':36s} {'steps':>6s} {'steps/s':>9s} {'compile s':>10s} {'final KL':>10s} "
            f"{'s to KL<=0.05':>14s} {'steps/s vs Adam':>16s}"
        )
        adam_rate = rows[2][2]
        for label, steps, rate, compile_s, kl, to_target in rows:
            print(
                f"{label:36s} {steps:6d} {rate:9.0f} {compile_s:10.2f} {kl:10.3g} "
                f"{to_target:14.3g} {rate / adam_rate:16.2f}"
            )
    for beta in (0.05, 1.0, 100.0):
        rows, smc = sampler_rows(env, 100, beta, args)
        print(f"\nsamplers, notebook grid, T = 100, beta = {beta}, {args.chains} chains")
        print(f"{'sampler':30s} {'ESS(ret)/s':>11s} {'R-hat':>8s} {'mean TV':>9s} {'wall s':>8s}")
        for label, ess, r_hat, tv, wall in rows:
            print(f"{label:30s} {ess / wall:11.1f} {r_hat:8.3g} {tv:9.4f} {wall:8.2f}")
        print("  " + "; ".join(smc))
        if any(np.isnan(row[1]) for row in rows):
            print("  (ESS nan: every draw of every chain has the same return: the chains agree)")


if __name__ == "__main__":
    main()
