"""``pgm-rl exact``: log Z, the expected return, where the agent ends and the MAP path.

With ``--env``: the exact posterior beside the soft-Bellman policy (log Z vs ELBO*, planned vs
executed return, where each ends) and, with ``--plots``, the two occupancies side by side.
"""

import math
import os

import numpy as np

from pgm_rl import exact
from pgm_rl.cli import devices
from pgm_rl.cli.common import ENV_OCCUPANCY_FILE
from pgm_rl.cli.outputs import Outputs
from pgm_rl.cli.problem import (
    build_env,
    goal_states,
    is_gymnasium,
    problem_line,
    random_parts,
    setup_jax,
    state_label,
)
from pgm_rl.worlds import ACTION_NAMES


def run(args):
    """Run ``pgm-rl exact`` with the parsed ``args``; the exit code."""
    if args.env is not None and (
        args.checkpoint or (args.devices or 1) > 1 or args.coordinator is not None
    ):
        raise ValueError(
            "--checkpoint, --devices N > 1 and --coordinator are for large grids (--grid); a "
            "Gymnasium environment (--env) is solved whole on one device"
        )
    place = devices.setup(args)
    env = build_env(args)
    if args.plots is not None and not is_gymnasium(env):
        raise ValueError(
            "exact --plots draws a Gymnasium environment's map (posterior beside soft-Bellman "
            "occupancy): give --env"
        )
    if is_gymnasium(env):
        pictures = [] if args.plots is None else [ENV_OCCUPANCY_FILE]
        with Outputs(args, pictures) as outputs:
            return _exact_env(args, env, outputs)
    setup_jax()
    with place.printing():
        return _exact_grid(args, env, place)


def _exact_grid(args, env, place):
    """``exact --grid``: log Z, expected return, where the agent ends, the MAP path; the states
    split over ``place.devices`` where there are several, ``--checkpoint``: bounded memory."""
    mesh = None if place.devices is None else exact.states_mesh(place.devices)
    posterior = exact.solve(env, args.horizon, args.beta, checkpoint=args.checkpoint, mesh=mesh)
    if args.checkpoint:
        final = devices.host(posterior.marginals_at([args.horizon]))[0]
    else:
        final = devices.host(posterior.state_marginals[-1])
    print(f"exact posterior: {problem_line(env, args)}")
    print(f"log Z            = {posterior.log_z:.10g}")
    print(f"expected return  = {posterior.expected_return:.6g}")
    print(f"where the agent ends (at most {args.top} cells of probability > 0 at step T):")
    for state in np.argsort(-final, kind="stable")[: args.top]:
        if final[state] == 0:
            break
        print(f"  {env.cell_of(int(state))}  p = {final[state]:.4g}")
    if args.checkpoint:
        print(
            "most probable path: not computed with --checkpoint (its pass keeps (T, S, A) values)"
        )
        return 0
    actions, states = exact.most_probable_path(env, args.horizon, args.beta)
    path_return = float(np.asarray(env.reward)[states[:-1], actions].sum())
    # The cell path's probability sums over every action sequence giving it (e.g. "up" against
    # the top wall and "stay"), so it can be far larger than that of the one action sequence.
    print(
        f"most probable path (MAP action sequence, max-product pass): return {path_return:g}; "
        f"P(these actions) = {math.exp(float(posterior.log_prob(actions))):.4g}, "
        f"P(these cells) = {float(posterior.path_probability(states)):.4g}"
    )
    print(f"  actions: {_runs(ACTION_NAMES[a] for a in actions)}")
    print(f"  cells:   {_runs(str(env.cell_of(int(s))).replace(' ', '') for s in states)}")
    return 0


def _exact_env(args, env, outputs):
    """``exact --env``: the exact posterior beside the soft-Bellman policy, one table."""
    setup_jax()
    if args.plots is not None and getattr(env, "shape", None) is None:
        raise ValueError(f"exact --plots needs a grid map; {env.env_id} has none")
    post = exact.solve(env, args.horizon, args.beta)
    soft = exact.soft_bellman(env, args.horizon, args.beta)
    executed = exact.evaluate_policy(env, post.policy, args.beta)
    columns = (post, executed, soft)
    print(f"exact posterior and soft-Bellman policy: {problem_line(env, args)}")
    rows = [
        ("", ("posterior", "posterior's", "soft-Bellman")),
        ("", ("(planned)", "policy executed", "policy")),
        ("log Z | ELBO of the policy", _numbers((post.log_z, executed.elbo, soft.elbo), ".7g")),
        ("expected return", _numbers([c.expected_return for c in columns], ".6g")),
    ]
    goal = goal_states(env)
    if goal:
        where = ", ".join(state_label(env, s) for s in goal)
        reach = [c.reach_probability(goal) for c in columns]
        rows.append((f"P(reach the goal {where})", _numbers(reach, ".4g")))
    final = np.stack([np.asarray(c.state_marginals, np.float64)[-1] for c in columns])
    terminal = list(getattr(env, "terminal_states", ()))
    if terminal:
        order = sorted(terminal, key=lambda s: (s not in goal, -final[:, s].max(), s))
        shown = [s for s in order if s in goal or final[:, s].max() > 0][: args.top]
        rows.append(("P(end in a terminal state):", ("", "", "")))
        for state in shown:
            rows.append((f"  {state_label(env, state)}", _numbers(final[:, state], ".4g")))
        rest = [s for s in terminal if s not in shown]
        if rest:
            rows.append(
                (f"  {len(rest)} other terminal states", _numbers(final[:, rest].sum(1), ".4g"))
            )
        elsewhere = np.clip(1.0 - final[:, terminal].sum(1), 0.0, 1.0)
        rows.append(("  none (still on the way)", _numbers(elsewhere, ".4g")))
    width = max(len(label) for label, _ in rows)
    for label, values in rows:
        print((f"{label:<{width}}  " + "".join(f"{value:>17}" for value in values)).rstrip())
    gap = post.log_z - soft.elbo
    lucky = random_parts(env)  # what the posterior may bend (the mathematics differ)
    if not lucky:
        print(
            "deterministic dynamics and one start state: the posterior is the soft-Bellman "
            f"policy (log Z - ELBO* = {gap:.3g})"
        )
        actions, states = exact.most_probable_path(env, args.horizon, args.beta)
        names = env.action_names
        print(f"most probable path: {_runs(names[a] for a in actions)}")
        print(f"  states: {_runs(state_label(env, s).replace(' ', '') for s in states)}")
    else:
        print(
            f"optimism (Levine 2018, 2.4): log Z - ELBO* = {gap:.4g} nats; the posterior plans "
            f"as if {' and '.join(lucky)} {'were' if 'the dynamics' in lucky else 'was'} on its "
            f"side: it plans a return of {post.expected_return:.6g}, its policy executed in the "
            f"true dynamics gets {executed.expected_return:.6g}, the soft-Bellman policy "
            f"{soft.expected_return:.6g}"
        )
    drawn = []
    if args.plots is not None:
        import matplotlib.pyplot as plt  # (slow to import: only with --plots)

        from pgm_rl.plots import plot_env_occupancy

        with outputs.drawing() as folder:
            plot_env_occupancy(env, post, soft, save=os.path.join(folder, ENV_OCCUPANCY_FILE))
            plt.close("all")
            drawn.append(ENV_OCCUPANCY_FILE)
    outputs.commit(pictures=drawn)
    return 0


def _numbers(values, spec):
    return tuple(format(float(value), spec) for value in values)


def _runs(items):
    """'up x3, right' style run-length text."""
    out = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1][1] += 1
        else:
            out.append([item, 1])
    return ", ".join(name if count == 1 else f"{name} x{count}" for name, count in out)
