"""``pgm-rl smc``: log Z by sequential Monte Carlo, run several times, beside the exact log Z."""

import warnings

import jax
import numpy as np

from pgm_rl import diagnostics, exact, smc
from pgm_rl.cli.problem import build_env, problem_line, setup_jax
from pgm_rl.cli.proposal import load_proposal


def run(args):
    """Run ``pgm-rl smc`` with the parsed ``args``; the exit code."""
    env = build_env(args)
    setup_jax()
    proposal = None
    if args.proposal is not None:
        proposal, about = load_proposal(args.proposal, env, args.horizon)
    posterior = exact.solve(env, args.horizon, args.beta) if args.reference else None
    print(f"smc: {problem_line(env, args)}, {args.particles} particles, {args.runs} runs")
    if proposal is not None:
        print(f"proposal: {about}")
        if np.isfinite(proposal.beta) and proposal.beta != args.beta:
            print(
                f"note: the proposal was fitted at beta={proposal.beta:g}, not at this run's "
                f"--beta {args.beta:g}; the estimate stays unbiased, but a proposal far from the "
                "target wastes the particles (a warning below says when it is meaningless)"
            )
    if posterior is not None:
        print(f"exact log Z = {posterior.log_z:.8g}")
    results = []
    for run, key in enumerate(jax.random.split(jax.random.key(args.seed), args.runs)):
        with warnings.catch_warnings():  # said below in one line
            warnings.simplefilter("ignore", smc.SMCSaturationWarning)
            warnings.simplefilter("ignore", smc.SMCProposalWarning)
            result = smc.run_smc(
                key, env, args.horizon, args.beta, args.particles, proposal=proposal
            )
        log_z, se = float(result.log_z), float(result.log_z_se)
        se_text = f"± {se:.3g}"
        if result.proposal_mismatch:
            se_text += " (meaningless: see the warning)"
        elif result.saturated:
            se_text += " (unreliable)"
        if result.log_z_rounding > se and not result.proposal_mismatch:
            se_text += f" (rounding ± {result.log_z_rounding:.3g})"
        print(
            f"run {run}: log Z = {log_z:.8g} {se_text}{_versus_exact(result, posterior, env)}",
            flush=True,
        )
        if result.proposal_mismatch:
            print(f"warning: run {run}: {result.problems()[0]}", flush=True)
        if result.saturated:
            print(
                f"warning: run {run}: the genealogy has saturated (too few surviving "
                f"ancestors), so '± {se:.3g}' is unreliable and log Z may be far off; use more "
                "--particles and judge the spread between runs",
                flush=True,
            )
        results.append(result)
    for line in smc.log_z_problems(results, None if posterior is None else posterior.log_z):
        print(f"warning: {line}")
    estimates = [float(result.log_z) for result in results]
    spread = np.std(estimates, ddof=1) if len(estimates) > 1 else float("nan")
    print(
        f"pooled over runs (log-mean-exp of the Z estimates): log Z = {smc.pool_log_z(estimates):.8g} "
        f"(sd between runs {spread:.3g})"
    )
    return 0


def _versus_exact(result, posterior, env):
    """``"  (z = ...), ESS ..., mean TV of weighted marginals ..."`` of one run; without the
    exact posterior (``--no-reference``) only its ESS."""
    if posterior is None:
        return f", ESS {float(result.ess):.1f}"
    weighted = diagnostics.weighted_state_marginals(result.states, result.log_weights, env.n_states)
    marginals = np.asarray(posterior.state_marginals)  # (T + 1, S)
    mean_tv = 0.5 * np.abs(weighted - marginals).sum(axis=1).mean()
    z = smc.z_score(result, posterior.log_z)
    z = f"{z:+.2f}" if abs(z) < 1e5 else f"{z:+.3g}"
    return f"  (z = {z}), ESS {float(result.ess):.1f}, mean TV of weighted marginals {mean_tv:.4f}"
