"""Where ``pgm-rl exact`` and ``pgm-rl sample`` run: ``--devices`` and ``--coordinator``.

:func:`add_arguments` adds the options (imports no JAX: the parser calls it); :func:`setup` acts
on them before JAX starts its backend (the command modules import JAX but start nothing before
their ``run``):

- ``--devices N``: the first N devices of this process (on CPU, JAX is told to make N virtual
  devices, as ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` does); more than this
  process has is refused.
- ``--coordinator HOST:PORT --num-processes P --process-id I`` (all three or none):
  ``jax.distributed.initialize``, the processes' devices joined into one mesh (CPU collectives
  through gloo, JAX's default). A coordinator that does not answer, or processes that do not all
  join, within ``--coordinator-timeout`` seconds are one line on stderr and exit code 2: JAX
  itself would abort the process with a stack trace.

Every process runs the whole command (the sharded computations need all of them); only process 0
prints and writes files (:meth:`Placement.printing`), the others exit 0 in silence.
"""

import argparse
import contextlib
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

from pgm_rl.cli import options
from pgm_rl.cli.common import EXIT_USAGE, CommandError

__all__ = ["Placement", "add_arguments", "coordinator_address", "gather_run", "host", "setup"]

DEFAULT_TIMEOUT = 60


def coordinator_address(text):
    """An argparse type: ``HOST:PORT`` (an IPv6 host in brackets) -> ``(host, port)``."""
    host, colon, port = text.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        number = 0
    if not colon or not bare or not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be HOST:PORT (a port in 1..65535, e.g. localhost:1234 or 10.0.0.1:1234), "
            f"got {text!r}"
        )
    return bare, number


def add_arguments(parser, *, checkpoint=False):
    """Add ``--devices``, ``--coordinator``, ``--num-processes``, ``--process-id``,
    ``--coordinator-timeout`` (and with ``checkpoint``, ``--checkpoint``) to ``parser``."""
    group = parser.add_argument_group(
        "large problems",
        "split the work over devices (--devices) and processes or hosts (--coordinator, with "
        "--num-processes and --process-id, all three or none); only process 0 prints",
    )
    if checkpoint:
        group.add_argument(
            "--checkpoint",
            action="store_true",
            help="bounded memory: keep the backward messages at ~sqrt(T) checkpoints and "
            "recompute the rest on demand, O(S (sqrt(T) + A)) instead of (T, S, A) (no MAP path)",
        )
    group.add_argument(
        "--devices",
        type=options.positive_int,
        metavar="N",
        help="use the first N devices of this process (on CPU: N virtual devices); with N > 1 "
        "the work is split over them (default: one device, or every device of each process "
        "with --coordinator)",
    )
    group.add_argument(
        "--coordinator",
        type=coordinator_address,
        metavar="HOST:PORT",
        help="the address of process 0 and a free port there, the same for every process "
        "(jax.distributed.initialize)",
    )
    group.add_argument(
        "--num-processes",
        type=options.positive_int,
        metavar="P",
        help="with --coordinator: how many processes take part",
    )
    group.add_argument(
        "--process-id",
        type=options.nonnegative_int,
        metavar="I",
        help="with --coordinator: this process's number, 0..P-1 (0 prints the results)",
    )
    group.add_argument(
        "--coordinator-timeout",
        type=options.positive_int,
        metavar="SECONDS",
        help=f"with --coordinator: how long to wait for the coordinator and for every process "
        f"to join (default {DEFAULT_TIMEOUT})",
    )


@dataclass(frozen=True)
class Placement:
    """Where a command runs, as :func:`setup` arranged it.

    Attributes
    ----------
    devices : list of jax.Device or None
        The devices to split the work over (every process's, in process order); None: one
        device, as without the options.
    process_id, num_processes : int
        This process and how many there are (0 and 1 without ``--coordinator``).
    """

    devices: list | None
    process_id: int
    num_processes: int

    @property
    def leader(self):
        """Whether this process prints and writes (process 0)."""
        return self.process_id == 0

    @contextlib.contextmanager
    def printing(self):
        """The context the command runs in: with several processes, process 0's standard output
        carries only what the command prints (what C++ libraries write there, e.g. Gloo's
        connection lines, goes to standard error) and the other processes' is dropped."""
        if self.num_processes == 1:
            yield
            return
        sys.stdout.flush()
        saved = os.dup(1)
        target = os.dup(saved) if self.leader else os.open(os.devnull, os.O_WRONLY)
        os.dup2(2 if self.leader else target, 1)
        try:
            with open(target, "w") as out, contextlib.redirect_stdout(out):
                yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def host(array):
    """``array`` as a NumPy array on this process; a global array spanning other processes'
    devices is gathered first (every process must then call this alike)."""
    import jax
    import numpy as np

    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        array = multihost_utils.process_allgather(array, tiled=True)
    return np.asarray(array)


def setup(args):
    """Act on the options of :func:`add_arguments` before JAX starts its backend.

    Parameters
    ----------
    args : argparse.Namespace
        With ``devices``, ``coordinator`` ((host, port) or None), ``num_processes``,
        ``process_id`` and ``coordinator_timeout``; ``command`` names the command in messages.

    Returns
    -------
    Placement

    Raises
    ------
    ValueError
        The options do not go together, or ``--devices`` asks for more devices than this
        process has.
    CommandError
        The coordinator's port cannot be opened or does not answer in time.
    """
    import jax
    from jax._src import xla_bridge  # backends_are_initialized: no public equivalent

    together = {
        "--coordinator": args.coordinator,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    missing = [name for name, value in together.items() if value is None]
    if len(missing) not in (0, 3):
        raise ValueError(
            "--coordinator, --num-processes and --process-id go together (all three or none); "
            f"missing {', '.join(missing)}"
        )
    distributed = not missing
    if not distributed and args.coordinator_timeout is not None:
        raise ValueError("--coordinator-timeout is for --coordinator")
    if distributed and args.process_id >= args.num_processes:
        raise ValueError(
            f"--process-id must be in 0..{args.num_processes - 1} (--num-processes "
            f"{args.num_processes}), got {args.process_id}"
        )
    started = xla_bridge.backends_are_initialized()
    if args.devices is not None and not started:
        jax.config.update("jax_num_cpu_devices", args.devices)
    if distributed:
        if started:
            raise ValueError("--coordinator must act before JAX starts (JAX started already)")
        _initialize(args)
    local = jax.local_devices()
    wanted = len(local) if args.devices is None else args.devices
    if wanted > len(local):
        raise ValueError(
            f"--devices {wanted}: this process has {len(local)} {local[0].platform} "
            f"device{'s' if len(local) > 1 else ''}"
        )
    process_id, num_processes = jax.process_index(), jax.process_count()
    devices = None
    if distributed or (args.devices or 1) > 1:
        devices = _first_devices(jax.devices(), wanted)
        devices = devices if len(devices) > 1 else None
    return Placement(devices, process_id, num_processes)


def gather_run(mcmc):
    """Every process's chains of a finished ``numpyro.infer.MCMC`` run, on this process.

    NumPyro's ``transfer_states_to_host`` across processes: the draws of a run sharded over
    several processes' devices are global arrays no process can read; they become NumPy
    arrays of every chain (every process must call this alike).
    """
    import jax

    mcmc._states = jax.tree.map(host, mcmc._states)
    mcmc._states_flat = None


def _first_devices(devices, count):
    """The first ``count`` devices of each process, in process order."""
    chosen, taken = [], {}
    for device in devices:
        if taken.get(device.process_index, 0) < count:
            taken[device.process_index] = taken.get(device.process_index, 0) + 1
            chosen.append(device)
    return chosen


def _initialize(args):
    """``jax.distributed.initialize`` with one-line errors for what JAX would abort on."""
    import jax

    host, port = args.coordinator
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    timeout = DEFAULT_TIMEOUT if args.coordinator_timeout is None else args.coordinator_timeout
    deadline = time.monotonic() + timeout
    where = f"--coordinator {address}"
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise CommandError(f"{where}: unknown host {host!r} ({error.strerror})") from None
    if args.process_id == 0:
        _check_port_free(port, where)
    elif not _answers(host, port, deadline):
        raise CommandError(
            f"{where}: nothing answered within {timeout} s (--coordinator-timeout): start "
            "process 0 (--process-id 0) on that host with the same --coordinator, and check "
            "the host name and the port"
        )
    message = (
        f"pgm-rl {args.command}: error: {where}: not all {args.num_processes} processes joined "
        f"within {timeout} s (--coordinator-timeout): start each with the same --coordinator "
        f"and --num-processes {args.num_processes} and its own --process-id "
        f"0..{args.num_processes - 1}"
    )
    # JAX aborts the process (a fatal error and a stack trace) when its own timeout passes, so
    # this watchdog, which runs while JAX waits (it releases the GIL), gives up first.
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), _give_up, (message,))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=timeout + 30,
        )
    finally:
        watchdog.cancel()


def _give_up(message):
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_USAGE)


def _check_port_free(port, where):
    """Process 0 opens the coordinator on ``port`` (every address): refuse a port in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as error:
            raise CommandError(
                f"{where}: process 0 cannot open port {port} here ({error.strerror}); choose "
                "another port for every process"
            ) from None


def _answers(host, port, deadline):
    """Whether something accepts a TCP connection at ``host:port`` before ``deadline``."""
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
