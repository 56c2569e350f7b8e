"""Sharded exact inference: ``solve(..., mesh=states_mesh())`` on 8 virtual CPU devices.

For random grids of S = 10^5, 10^6, 10^7 states (sides 316, 1000, 3160: S a multiple of 8, so
nothing is padded and the results stay split over the devices), prints the median wall time of
``solve`` after compilation with the states sharded over 8 devices and on one device in the same
run, their ratio, the bytes per device of the sharded arrays (the dynamics, the (T, S, A) policy,
the (T + 1, S) marginals and messages) against one device's, and |log Z sharded - log Z single|.

The 8 devices are virtual (``XLA_FLAGS=--xla_force_host_platform_device_count=8``; the script
re-runs itself in a subprocess with the flag set) and share this machine's CPU cores, so the
ratio shows the overhead of sharding (the per-step all-gather of V_{t+1}, the all-reduce of the
forward scatter), not a speed-up; the memory per device is what a real multi-device run keeps.
The full run then times the value recursion of a deterministic grid (S = 10^5 .. 10^7) two ways:
GSPMD's all-gather of V_{t+1} against a halo exchange (``shard_map`` with ``ppermute`` of the
row above and below each device's block of rows).

    python benchmarks/bench_sharded.py              # S = 10^5, 10^6, 10^7; T = 20
    python benchmarks/bench_sharded.py --quick      # S = 10^5; T = 5
    python benchmarks/bench_sharded.py --x64        # float64 instead of JAX's default float32

From S = 10^7 on (``--checkpoint-from``) both runs use ``checkpoint=True`` and time log Z,
``marginals_at([0, T/2, T])`` and ``expected_return`` (the full mode's (T, S, A) policy alone
would be 4 GB in float32 at T = 20); a case is skipped, saying so, when the machine's available
memory is short of the estimate.

    python benchmarks/bench_sharded.py --checkpoint-from 1e8   # full mode at 10^7 too (~20 GB)
    python benchmarks/bench_sharded.py --sides 316 1000         # the solve table without 10^7
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

CHILD = "PGM_RL_BENCH_SHARDED_CHILD"
DEVICES = 8


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="S = 10^5 and T = 5 only")
    parser.add_argument("--x64", action="store_true", help="float64 (default: float32)")
    parser.add_argument("--horizon", type=int, default=None, help="T (default 20; quick 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    parser.add_argument(
        "--sides",
        type=int,
        nargs="+",
        default=None,
        help="grid sides of the solve table (default 316 1000 3160; quick 316)",
    )
    parser.add_argument(
        "--checkpoint-from",
        type=float,
        default=1e7,
        help="solve with checkpoint=True from this many states on (default 1e7)",
    )
    return parser.parse_args()


def rerun_with_devices():
    """Run this script again with 8 virtual CPU devices; return its exit code."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={DEVICES}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env[CHILD] = "1"
    return subprocess.run(
        [sys.executable, __file__, *sys.argv[1:]], env=env, check=False
    ).returncode


def available_bytes():
    """MemAvailable of /proc/meminfo (inf where unknown)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kept_arrays(posterior, dyn):
    """The device arrays a result keeps: the full mode's (T, S, A) policy, (T + 1, S) marginals
    and messages, and the dynamics ``dyn`` (if not None); the checkpointed mode's own arrays (V at the
    checkpoints, the dynamics, its start)."""
    if hasattr(posterior, "marginals_at"):  # checkpoint=True
        return [leaf for leaf in jax.tree.leaves(vars(posterior)) if isinstance(leaf, jax.Array)]
    arrays = [posterior.log_policy, posterior.state_marginals, *posterior.messages]
    if dyn is None:
        return arrays
    return arrays + [jax.numpy.asarray(array) for array in (*dyn.arrays, dyn.log_p0)]


def per_device_bytes(arrays, device):
    """Bytes of ``arrays`` held on ``device``."""
    return sum(
        shard.data.nbytes
        for array in arrays
        for shard in array.addressable_shards
        if shard.device == device
    )


def bench_case(side, horizon, beta, repeats, itemsize, checkpoint, mesh):
    import pgm_rl
    from pgm_rl.exact.sharding import shard_dynamics
    from pgm_rl.messages import sparse_dynamics

    n_states = side * side
    # one result at a time: (T, S, A) policy, 3 (T + 1, S) arrays, (S, A) dynamics x 5 twice
    # (the plain and the placed copy), the grid's tables, temporaries: peak RSS measured 19.5 GB
    # at 10^7, T = 20, float32; the checkpointed runs measured nearly as much at T = 20 (their
    # recomputed segments and the grid's tables dominate), so the same estimate for both
    needed = 2.5 * itemsize * n_states * (horizon * 5 + 3 * (horizon + 1) + 30)
    if needed > available_bytes():
        return {"skipped": f"needs ~{needed / 2**30:.0f} GiB, {available_bytes() / 2**30:.0f} free"}
    rng = np.random.default_rng(0)
    env = pgm_rl.GridWorld(rng.uniform(-2, 2, (side, side)), (side - 1, 0))
    steps = [0, horizon // 2, horizon]

    def run(mesh):
        posterior = pgm_rl.solve(env, horizon, beta, checkpoint=checkpoint, mesh=mesh)
        if checkpoint:  # log Z, three marginals and the expected return, as the issue asks
            jax.block_until_ready((posterior.marginals_at(steps), posterior.expected_return))
        else:
            jax.block_until_ready(kept_arrays(posterior, None)[:4])
        return posterior

    dyn = sparse_dynamics(env, beta)
    single = run(None)  # compile
    single_s = median_time(lambda: run(None), repeats)
    single_bytes = sum(array.nbytes for array in kept_arrays(single, dyn))
    log_z = single.log_z
    del single
    sharded = run(mesh)
    sharded_s = median_time(lambda: run(mesh), repeats)
    device = mesh.devices.flat[0]
    device_bytes = per_device_bytes(kept_arrays(sharded, shard_dynamics(dyn, mesh)), device)
    spec = sharded.marginals_at(steps) if checkpoint else sharded.log_policy
    return {
        "single_s": single_s,
        "sharded_s": sharded_s,
        "single_bytes": single_bytes,
        "device_bytes": device_bytes,
        "dlogz": abs(sharded.log_z - log_z),
        "log_z": log_z,
        "spec": f"{'marginals_at' if checkpoint else 'log_policy'} P{tuple(spec.sharding.spec)}",
    }


def halo_against_gather(side, horizon, mesh, repeats):
    """The value recursion ``V_t = logsumexp_a (r + V_{t+1}[ns]) - log A`` (V_0 only) of a
    deterministic grid, its rows split over ``mesh`` two ways: GSPMD's all-gather of V_{t+1} for
    the next-state gather, and a halo exchange (``shard_map`` with ``ppermute`` of the one row
    above and below each block, the only rows a grid move reaches). -> (gather s, halo s, max
    difference)."""
    import jax.numpy as jnp
    from jax import lax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import pgm_rl

    n_devices = mesh.shape["states"]
    env = pgm_rl.GridWorld(np.random.default_rng(0).uniform(-2, 2, (side, side)), (side - 1, 0))
    ns = np.asarray(env.next_state, np.int32)
    reward = np.asarray(env.reward, jax.dtypes.canonicalize_dtype(np.float64))
    log_a = reward.dtype.type(np.log(ns.shape[1]))
    rows = side // n_devices  # each device: rows x side states, then a halo row on each side
    first_row = np.arange(ns.shape[0]) // (rows * side) * rows
    local_ns = (ns - ((first_row - 1) * side)[:, None]).astype(np.int32)
    sharding = NamedSharding(mesh, P("states"))
    ns, local_ns, reward = (jax.device_put(a, sharding) for a in (ns, local_ns, reward))

    def values(v_of, ns, reward, v0):
        def step(v, _):
            return jax.nn.logsumexp(reward + v_of(v)[ns], axis=-1) - log_a, None

        return lax.scan(step, v0, None, length=horizon)[0]

    gather = jax.jit(lambda ns, r: values(lambda v: v, ns, r, jnp.zeros(ns.shape[0], r.dtype)))
    down = [(i, i + 1) for i in range(n_devices - 1)]

    def with_halo(v):
        above = lax.ppermute(v[-side:], "states", down)  # the last row of the block above
        below = lax.ppermute(v[:side], "states", [(j, i) for i, j in down])
        return jnp.concatenate([above, v, below])

    def local(ns, r):
        v0 = lax.pcast(jnp.zeros(ns.shape[0], r.dtype), ("states",), to="varying")
        return values(with_halo, ns, r, v0)

    spec = P("states")
    halo = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec))
    by_gather = jax.block_until_ready(gather(ns, reward))
    by_halo = jax.block_until_ready(halo(local_ns, reward))
    diff = float(np.max(np.abs(np.asarray(by_gather) - np.asarray(by_halo))))
    gather_s = median_time(lambda: jax.block_until_ready(gather(ns, reward)), repeats)
    halo_s = median_time(lambda: jax.block_until_ready(halo(local_ns, reward)), repeats)
    return gather_s, halo_s, diff


def main():
    args = parse_args()
    if os.environ.get(CHILD) != "1":
        sys.exit(rerun_with_devices())
    jax.config.update("jax_enable_x64", args.x64)
    from pgm_rl.exact import states_mesh

    dtype = np.dtype(np.float64 if args.x64 else np.float32)
    mesh = states_mesh()
    horizon = args.horizon or (5 if args.quick else 20)
    sides = args.sides or ((316,) if args.quick else (316, 1000, 3160))
    beta = 1.0
    print(
        f"pgm_rl.solve with mesh=states_mesh() over {len(jax.devices())} virtual CPU devices "
        f"against one device, {dtype.name}, T = {horizon}, beta = {beta}, median of "
        f"{args.repeats} runs after compilation (1 at S >= 10^6); checkpoint=True from S = "
        f"{args.checkpoint_from:.0e} (log Z, marginals_at([0, T/2, T]), expected_return); "
        f"jax {jax.__version__}, {os.cpu_count()} CPU cores shared by all devices: the ratio is "
        "the overhead of sharding on one CPU, not a speed-up"
    )
    header = (
        f"{'grid':>10} {'S':>9} {'mode':>10} {'1 device s':>10} {'8 devices s':>11} "
        f"{'ratio':>7} {'MiB 1 device':>12} {'MiB per device':>14} {'|dlogZ|':>8}  sharding"
    )
    print(header)
    print("-" * len(header))
    for side in sides:
        n_states = side * side
        repeats = args.repeats if n_states < 10**6 else 1
        checkpoint = n_states >= args.checkpoint_from
        mode = "checkpoint" if checkpoint else "full"
        row = bench_case(side, horizon, beta, repeats, dtype.itemsize, checkpoint, mesh)
        grid = f"{side}x{side}"
        if "skipped" in row:
            print(f"{grid:>10} {n_states:>9} {mode:>10} skipped: {row['skipped']}")
            continue
        print(
            f"{grid:>10} {n_states:>9} {mode:>10} {row['single_s']:>10.3f} "
            f"{row['sharded_s']:>11.3f} {row['sharded_s'] / row['single_s']:>6.2f}x "
            f"{row['single_bytes'] / 2**20:>12.1f} {row['device_bytes'] / 2**20:>14.1f} "
            f"{row['dlogz']:>8.1e}  {row['spec']}",
            flush=True,
        )
    if args.quick:
        return
    print(
        "\nhalo exchange against the all-gather: the value recursion alone (V_0, deterministic "
        f"grid, T = {horizon}), rows split over {len(jax.devices())} devices"
    )
    header = (
        f"{'grid':>10} {'S':>9} {'all-gather s':>12} {'halo s':>8} {'ratio':>7} {'max diff':>9}"
    )
    print(header)
    print("-" * len(header))
    for side in (320, 1000, 3160):
        needed = 10 * side * side * 4 * dtype.itemsize  # the grid's tables, 3 (S, A) arrays
        if needed > available_bytes():
            print(f"{side}x{side:<5} skipped: needs ~{needed / 2**30:.0f} GiB")
            continue
        gather_s, halo_s, diff = halo_against_gather(side, horizon, mesh, args.repeats)
        print(
            f"{f'{side}x{side}':>10} {side * side:>9} {gather_s:>12.3f} {halo_s:>8.3f} "
            f"{halo_s / gather_s:>6.2f}x {diff:>9.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
