"""The main job end to end (``make demo``): every kernel against exact inference, then the notebook.

1. The notebook grid at a horizon and beta where the posterior is interesting: T = 10 (the goal
   is exactly 10 moves away) and beta = 0.001, where exact inference gives the agent a 35%
   chance of ending on the goal; every registered kernel (skipped with a note when its module
   is missing) and exact iid sampling, compared with exact inference.
2. The notebook's own setting, T = 100 and beta = 100: exact inference (log Z ~ 9.1e7, the
   agent reaches the goal with probability 1) and the notebook's TrajectoryMH failing there.

Writes ``<out>/`` (default ``report/``): one netCDF per run, PNG pictures and ``summary.md``.
Run: ``python examples/demo.py [--out DIR]``; files inside ``DIR`` from an earlier run are replaced.
"""

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pgm_rl  # noqa: E402
from pgm_rl import io, plots  # noqa: E402
from pgm_rl.cli import main  # noqa: E402
from pgm_rl.compare import compare_kernels, format_table  # noqa: E402
from pgm_rl.kernels.registry import KERNELS  # noqa: E402

INTERESTING = {"horizon": 10, "beta": 0.001, "chains": 4, "warmup": 300, "samples": 1000}
NOTEBOOK = {"horizon": 100, "beta": 100.0, "chains": 4, "warmup": 500, "samples": 1000}


def run_case(title, folder, names, env, setting, seed=0):
    """Compare ``names`` with exact on one problem; write netCDF, pictures; return Markdown."""
    os.makedirs(folder, exist_ok=True)
    horizon, beta = setting["horizon"], setting["beta"]
    print(f"\n=== {title}: T={horizon}, beta={beta:g} ===", flush=True)
    main(["exact", "--horizon", str(horizon), "--beta", str(beta)])
    exact = pgm_rl.solve(env, horizon, beta)
    rows, trees, comparisons = compare_kernels(
        names,
        env,
        horizon,
        beta,
        chains=setting["chains"],
        warmup=setting["warmup"],
        samples=setting["samples"],
        seed=seed,
        exact=exact,
        log=lambda message: print(message, flush=True),
    )
    table = format_table(rows)
    print(table, flush=True)
    found = [
        f"{name}: {line}"
        for name, dt in trees.items()
        if name != "exact iid"  # the reference the others are judged against
        for line in pgm_rl.diagnostics.problems(dt, comparisons[name])
    ]
    for line in found:
        print(f"warning: {line}", flush=True)
    pictures = []

    def picture(draw, filename):
        draw(os.path.join(folder, filename))
        plt.close("all")
        pictures.append(filename)

    for name, dt in trees.items():
        slug = name.replace(" ", "_")
        io.save(dt, os.path.join(folder, f"{slug}.nc"), overwrite=True)
        picture(lambda path, dt=dt: plots.plot_occupancy(dt, save=path), f"occupancy_{slug}.png")
    picture(lambda path: plots.plot_tv(comparisons, save=path), "tv.png")
    # Paths, rank and trace plots for the notebook's sampler, the best kernel and exact draws;
    # the best among the kernels that target the posterior (the registry says which).
    kernels = [name for name in trees if name in KERNELS and KERNELS[name].targets_posterior]
    best = min(kernels, key=lambda name: float(comparisons[name]["mean_tv"]))
    for name in dict.fromkeys(["trajectory-mh", best, "exact iid"]):
        slug = name.replace(" ", "_")
        dt = trees[name]
        picture(lambda path, dt=dt: plots.plot_trajectories(dt, save=path), f"paths_{slug}.png")
        if float(dt["posterior"]["return"].std()) > 0:  # ranks of a constant are all ties
            picture(lambda path, dt=dt: plots.plot_rank(dt, save=path), f"rank_{slug}.png")
            picture(lambda path, dt=dt: plots.plot_trace(dt, save=path), f"trace_{slug}.png")
    p_goal = float(np.asarray(exact.state_marginals)[-1, pgm_rl.diagnostics.best_state(env)])
    lines = [
        f"## {title}",
        "",
        f"Notebook grid, T = {horizon}, beta = {beta:g}: exact log Z = {exact.log_z:.6g}, "
        f"E[return] = {exact.expected_return:.6g}, P(at the goal at step T) = {p_goal:.3f}. "
        f"{setting['chains']} chains x ({setting['warmup']} warm-up + {setting['samples']} draws) "
        "per kernel; exact iid sampling draws as many.",
        "",
        format_table(rows, markdown=True),
        "",
        "Problems found (pgm_rl.diagnostics.problems):",
        "",
        *([f"- {line}" for line in found] or ["- none"]),
        "",
        f"![TV over time]({os.path.basename(folder)}/tv.png)",
        "",
        f"![Occupancy, {best}]({os.path.basename(folder)}/occupancy_{best.replace(' ', '_')}.png)",
        "",
        "Pictures: " + ", ".join(f"[{p}]({os.path.basename(folder)}/{p})" for p in pictures),
        "",
    ]
    return "\n".join(lines)


def main_demo(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="report", help="report folder (default report/)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty folder the demo did not make",
    )
    args = parser.parse_args(argv)
    marker = os.path.join(args.out, ".pgm_rl_demo")
    if (
        os.path.isdir(args.out)
        and os.listdir(args.out)
        and not os.path.exists(marker)
        and not args.overwrite
    ):
        parser.exit(
            2,
            f"demo: error: {args.out!r} is a non-empty folder the demo did not make; "
            "pick another --out or pass --overwrite\n",
        )
    start = time.perf_counter()
    env = pgm_rl.GridWorld.notebook()
    os.makedirs(args.out, exist_ok=True)
    with open(marker, "w") as handle:
        handle.write("made by examples/demo.py: rerunning the demo regenerates this folder\n")
    sections = [
        run_case(
            "Every kernel where the posterior is interesting",
            os.path.join(args.out, "interesting"),
            list(KERNELS),
            env,
            INTERESTING,
        ),
        run_case(
            "The notebook's own setting: TrajectoryMH fails",
            os.path.join(args.out, "notebook"),
            ["trajectory-mh"],
            env,
            NOTEBOOK,
        ),
    ]
    seconds = time.perf_counter() - start
    header = [
        "# pgm_rl demo report",
        "",
        "Columns: wall time of the whole MCMC run (JIT compilation included); ESS/s = bulk ESS "
        "of the return / wall time; max R-hat over the return, the at-goal indicators and the "
        "state-occupancy indicators (the worst, named in the problems list when above 1.01); mean "
        "TV = mean over steps 0..T of the total-variation distance between sampled and exact "
        "state marginals (0 = exact, 1 = disjoint); E[return] error = sampled - exact, ± its MCSE. "
        "R-hat is nan where the quantities do not vary within chains (stuck chains, or a "
        "posterior that is a point mass, as at the notebook's setting).",
        "",
        "Kernels (pgm_rl.kernels.registry):",
        "",
        *(
            f"- `{name}`: {record.summary}" + (" (NumPyro's own)" if record.builtin else "")
            for name, record in KERNELS.items()
        ),
        "",
    ]
    footer = [f"Demo wall time: {seconds:.0f} s.", ""]
    path = os.path.join(args.out, "summary.md")
    with open(path, "w") as handle:
        handle.write("\n".join(header + sections + footer))
    print(f"\nwrote {path} ({seconds:.0f} s in all)")


if __name__ == "__main__":
    main_demo()
