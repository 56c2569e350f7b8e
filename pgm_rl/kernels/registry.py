"""One record per kernel: what the CLI, the demo, the benchmarks, replica exchange and the tests read.

``KERNELS["action-gibbs"].make(model, proposal="mh")`` builds the kernel; its record also
declares the kernel's parameters (:class:`KernelParam`: name, type, default, help, choices),
says which ``chain_method`` it needs (NumPyro's Gibbs kernels and MixedHMC refuse
``"vectorized"``, so they run their chains under ``jax.vmap``), which ``extra_fields`` record
its acceptance rate, and whether its module's pure ``build_kernel(world, horizon, **params)``
can serve as a replica-exchange rung. ``record_of(kernel)`` finds the record of a kernel built
by hand, so swapping kernels is one line::

    kernel = ParticleGibbs(trajectory_model, num_particles=64)  # or DiscreteHMCGibbs(NUTS(...))
    record = record_of(kernel)
    mcmc = MCMC(kernel, num_warmup=100, num_samples=100, chain_method=record.chain_method)
    mcmc.run(key, env, horizon, beta, extra_fields=record.extra_fields)

Text parameters (the command line's ``--kernel-arg NAME=VALUE``) go through
:func:`parse_kernel_args`, then :func:`make_kernel`. A kernel added here is automatically
checked against exact inference by ``tests/kernels/test_registry.py`` and
``tests/kernels/test_joint.py``. Reading the registry imports no kernel, JAX or NumPyro (the
command line lists the kernels in its help at once); ``make`` imports what it builds, by the
module name recorded here (so the kernel modules may import the registry).
"""

import importlib
import math
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "KERNELS",
    "KernelParam",
    "KernelRecord",
    "make_kernel",
    "parse_kernel_args",
    "record_of",
]


class KernelParam(NamedTuple):
    """One keyword parameter of a kernel's constructor (and of its module's ``build_kernel``).

    Attributes
    ----------
    name : str
    type : type
        ``int``, ``float``, ``str``, ``bool``, ``tuple`` (of floats; text: comma-separated), or
        another type for Python objects only (``object``: a policy; ``dict``), which
        :func:`parse_kernel_args` refuses as text.
    default : object
        The constructor's default (``None`` where the constructor has its own meaning for it).
    help : str
        One line for help texts.
    choices : tuple or None
        The allowed values, where they are few.
    """

    name: str
    type: type
    default: object
    help: str
    choices: tuple | None = None


class KernelRecord(NamedTuple):
    """How to build and run one kernel.

    Attributes
    ----------
    name : str
        The command-line name, e.g. ``"action-gibbs"``.
    kernel_class : str
        ``"module.ClassName"`` of the kernel :meth:`make` builds (the top-level kernel: NumPyro's
        ``DiscreteHMCGibbs`` for ``DiscreteHMCGibbs(NUTS(model))``); read by :func:`record_of`.
    vmap_chains : bool
        Run the chains under ``jax.vmap`` (NumPyro's Gibbs kernels and MixedHMC refuse
        ``"vectorized"``); :attr:`chain_method` is what to pass to ``MCMC``.
    extra_fields : tuple of str
        ``MCMC.run(extra_fields=...)`` that records the acceptance rate (and divergences).
    rung : bool
        Whether the module's pure ``build_kernel(world, horizon, **params) -> step(key, state,
        beta)`` over :class:`~pgm_rl.kernels.base.RegenerationState` can serve replica exchange
        (:meth:`build_kernel`).
    builtin : bool
        NumPyro's own kernel (not pgm_rl's).
    targets_posterior : bool
        ``False`` for the notebook's per-step sampler, which targets another distribution.
    summary : str
        One line for help texts.
    params : tuple of KernelParam
        The keyword parameters :meth:`make` takes.
    builder : callable or None
        ``builder(model, **params)`` for kernels that are not one class called on the model
        (NumPyro's built-ins); ``None``: ``kernel_class(model, **params)``.
    """

    name: str
    kernel_class: str
    vmap_chains: bool
    extra_fields: tuple
    rung: bool
    builtin: bool
    targets_posterior: bool
    summary: str
    params: tuple = ()
    builder: Callable | None = None

    @property
    def chain_method(self):
        """``jax.vmap`` or ``"vectorized"``: the ``chain_method`` argument of ``MCMC``."""
        if self.vmap_chains:
            # lazy: reading the registry imports no JAX (``pgm-rl --help`` in < 1 s)
            import jax

            return jax.vmap
        return "vectorized"

    @property
    def module(self):
        """The name of the module that defines the kernel."""
        return self.kernel_class.rsplit(".", 1)[0]

    def make(self, model, **params):
        """The kernel on ``model`` (a NumPyro model, e.g. :func:`pgm_rl.trajectory_model`),
        with the given :attr:`params` (the others keep the constructor's defaults).

        Raises
        ------
        ValueError
            For a name not in :attr:`params`; the constructor checks the values.
        """
        self._check_names(params)
        if self.builder is not None:
            return self.builder(model, **params)
        module, cls = self.kernel_class.rsplit(".", 1)
        return getattr(importlib.import_module(module), cls)(model, **params)

    def build_kernel(self, world, horizon, log_factor=None, **params):
        """The pure ``step(key, state, beta)`` of a rung kernel: its module's ``build_kernel``
        (``log_factor``: a model's extra terms f, :mod:`pgm_rl.kernels.base`, or None).

        Raises
        ------
        ValueError
            For a kernel that is no rung, or a name not in :attr:`params`.
        """
        if not self.rung:
            raise ValueError(f"kernel {self.name!r} has no pure step a replica-exchange rung runs")
        self._check_names(params)
        module = importlib.import_module(self.module)
        return module.build_kernel(world, horizon, log_factor=log_factor, **params)

    def _check_names(self, params):
        allowed = {param.name for param in self.params}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(
                f"kernel argument {unknown[0]!r} is not a parameter of {self.name}; "
                f"{_allowed_text(self)}"
            )


def _discrete_hmc_gibbs(model, random_walk=False, modified=False):
    from numpyro.infer import NUTS, DiscreteHMCGibbs  # lazy: see KernelRecord.chain_method

    return DiscreteHMCGibbs(NUTS(model), random_walk=random_walk, modified=modified)


def _mixed_hmc(model, num_discrete_updates=20, trajectory_length=1.2):
    from numpyro.infer import HMC, MixedHMC  # lazy: see KernelRecord.chain_method

    return MixedHMC(
        HMC(model, trajectory_length=trajectory_length), num_discrete_updates=num_discrete_updates
    )


_ACCEPT = ("accept_prob",)
_NUM_PARTICLES = KernelParam(
    "num_particles", int, 256, "particles per sweep (>= 2), the reference included"
)
_RUNGS = ("trajectory-mh", "action-gibbs", "suffix-mh", "particle-gibbs")
KERNELS = {
    record.name: record
    for record in (
        KernelRecord(
            "trajectory-mh", "pgm_rl.kernels.trajectory_mh.TrajectoryMH", False, _ACCEPT,
            True, False, True,
            "the notebook's sampler: independence MH with whole prior rollouts",
        ),
        KernelRecord(
            "stepwise-mh", "pgm_rl.kernels.stepwise_mh.StepwiseMH", False, _ACCEPT,
            False, False, False,
            "the notebook's per-step sampler (targets another distribution)",
        ),
        KernelRecord(
            "action-gibbs", "pgm_rl.kernels.action_gibbs.ActionGibbs", False, _ACCEPT,
            True, False, True,
            "systematic-scan Gibbs over the actions, all candidates scored at once",
            (KernelParam("proposal", str, "gibbs",
                         "exact full conditionals (gibbs) or a uniform proposal, MH accept (mh)",
                         ("gibbs", "mh")),),
        ),
        KernelRecord(
            "suffix-mh", "pgm_rl.kernels.suffix_mh.SuffixMH", False, _ACCEPT,
            True, False, True,
            "MH sweeps regenerating action suffixes from the prior",
            (KernelParam("block_size", int, None,
                         "None: suffix moves; k >= 1: block moves redrawing k steps"),),
        ),
        KernelRecord(
            "particle-gibbs", "pgm_rl.kernels.particle_gibbs.ParticleGibbs", False, _ACCEPT,
            True, False, True,
            "conditional SMC with ancestor sampling (256 particles)",
            (_NUM_PARTICLES,
             KernelParam("proposal", object, None,
                         "a (T, S, A) policy proposing the free particles (None: the prior)")),
        ),
        KernelRecord(
            "guided-particle-gibbs", "pgm_rl.kernels.particle_gibbs.GuidedParticleGibbs",
            False, _ACCEPT, False, False, True,
            "particle-gibbs proposing from soft_bellman at beta / 10 (importance-weighted)",
            (_NUM_PARTICLES,
             KernelParam("proposal", object, None,
                         "a callable (world, horizon, beta) -> policy, or a policy (None: "
                         "soft_bellman at beta / 10)")),
        ),
        KernelRecord(
            "replica-exchange", "pgm_rl.kernels.replica_exchange.ReplicaExchange", False,
            (*_ACCEPT, "kernel_state.swap_accept_prob"), False, False, True,
            "parallel tempering of suffix-mh over 6 inverse temperatures",
            (KernelParam("base_kernel", str, "suffix-mh", "the kernel run on every rung",
                         _RUNGS),
             KernelParam("num_rungs", int, 6, "rungs K >= 2 of the default geometric ladder"),
             KernelParam("betas", tuple, None,
                         "the ladder, strictly decreasing from the model's beta (None: "
                         "geometric, beta down to beta / 1000)"),
             KernelParam("base_params", dict, None,
                         "the base kernel's parameters (text: base.NAME=VALUE)")),
        ),
        KernelRecord(
            "discrete-hmc-gibbs", "numpyro.infer.hmc_gibbs.DiscreteHMCGibbs", True,
            ("hmc_state.accept_prob", "hmc_state.diverging"), False, True, True,
            "NumPyro's DiscreteHMCGibbs(NUTS)",
            (KernelParam("random_walk", bool, False, "random-walk proposals for the discrete sites"),
             KernelParam("modified", bool, False, "modified Gibbs (never proposes the current value)")),
            _discrete_hmc_gibbs,
        ),
        KernelRecord(
            "mixed-hmc", "numpyro.infer.mixed_hmc.MixedHMC", True,
            ("accept_prob", "hmc_state.diverging"), False, True, True,
            "NumPyro's MixedHMC(HMC)",
            (KernelParam("num_discrete_updates", int, 20, "discrete updates per step"),
             KernelParam("trajectory_length", float, 1.2, "HMC trajectory length")),
            _mixed_hmc,
        ),
    )
}  # fmt: skip


def make_kernel(name, model=None, **params):
    """The kernel registered as ``name`` (a key of :data:`KERNELS`) on ``model``, with ``params``.

    ``model`` defaults to :func:`pgm_rl.trajectory_model`; ``params`` are the record's
    :attr:`KernelRecord.params` (e.g. ``make_kernel("particle-gibbs", num_particles=64)``), the
    others keep their defaults. Text parameters: :func:`parse_kernel_args`.
    """
    record = _record(name)
    if model is None:
        # lazy: the model imports NumPyro (see KernelRecord.chain_method)
        from pgm_rl.model import trajectory_model

        model = trajectory_model
    return record.make(model, **params)


def parse_kernel_args(name, items):
    """The keyword parameters of kernel ``name`` from ``"NAME=VALUE"`` strings, converted.

    Values are converted to the parameter's type (``int``, ``float``, ``bool``: true/false,
    ``str``, ``tuple``: comma-separated floats; ``none`` for a parameter whose default is
    ``None``) and checked against its choices. Replica exchange's ``base.NAME=VALUE`` items
    are the base kernel's parameters (``base_params``), parsed against the base kernel.

    Parameters
    ----------
    name : str
        A key of :data:`KERNELS`.
    items : iterable of str or None
        E.g. ``["num_particles=1024"]`` (the command line's repeated ``--kernel-arg``).

    Returns
    -------
    dict
        For :func:`make_kernel` (``make_kernel(name, **params)``).

    Raises
    ------
    ValueError
        Naming the argument and the allowed names, types or choices, for a malformed item, an
        unknown or repeated name, a value of the wrong type or not among the choices, or a
        parameter that takes a Python object.
    """
    record = _record(name)
    params, base_items = {}, []
    for item in items or ():
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"kernel argument must be NAME=VALUE, got {item!r}")
        key, text = (part.strip() for part in item.split("=", 1))
        if key.startswith("base.") and "base_params" in {p.name for p in record.params}:
            base_items.append(f"{key[len('base.') :]}={text}")
            continue
        param = {p.name: p for p in record.params}.get(key)
        if param is None:
            raise ValueError(
                f"kernel argument {key!r} is not a parameter of {name}; {_allowed_text(record)}"
            )
        if key in params:
            raise ValueError(f"kernel argument {key!r} is given twice")
        params[key] = _convert(param, text)
    if base_items:
        base = params.get("base_kernel", _default(record, "base_kernel"))
        params["base_params"] = parse_kernel_args(base, base_items)
    return params


def _default(record, name):
    return next(param.default for param in record.params if param.name == name)


def _convert(param, text):
    """``text`` as a value of ``param``, or a ``ValueError`` naming it and what is allowed."""
    if param.default is None and text.lower() == "none":
        return None
    wrong = ValueError(f"kernel argument {param.name} must be {_type_text(param)}, got {text!r}")
    if param.type is bool:
        value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() not in value:
            raise wrong
        converted = value[text.lower()]
    elif param.type is int:
        try:
            converted = int(text)
        except ValueError:
            raise wrong from None
    elif param.type is float:
        try:
            converted = float(text)
        except ValueError:
            raise wrong from None
        if not math.isfinite(converted):
            raise wrong
    elif param.type is tuple:
        try:
            converted = tuple(float(part) for part in text.split(","))
        except ValueError:
            raise wrong from None
    elif param.type is str:
        converted = text
    else:
        raise ValueError(
            f"kernel argument {param.name} takes a Python object ({param.help}), not text: "
            "pass it to make_kernel"
        )
    if param.choices is not None and converted not in param.choices:
        raise ValueError(
            f"kernel argument {param.name} must be one of {', '.join(map(str, param.choices))}; "
            f"got {text!r}"
        )
    return converted


def _type_text(param):
    text = {
        bool: "true or false",
        int: "an int",
        float: "a finite float",
        tuple: "comma-separated floats",
        str: "a string",
    }.get(param.type, param.type.__name__)
    return text + (" or none" if param.default is None else "")


def _allowed_text(record):
    if not record.params:
        return f"{record.name} takes no arguments"
    return "allowed: " + ", ".join(
        f"{param.name} ({_type_text(param)}, default {param.default!r})" for param in record.params
    )


def record_of(kernel):
    """The :data:`KERNELS` record of a kernel instance: how to run it.

    Parameters
    ----------
    kernel : numpyro.infer.mcmc.MCMCKernel
        A registered kernel built by hand, e.g. ``ParticleGibbs(model, num_particles=64)`` or
        ``DiscreteHMCGibbs(NUTS(model))`` (a subclass gets its nearest registered base's record).

    Returns
    -------
    KernelRecord
        Pass ``record.chain_method`` to ``MCMC`` and ``record.extra_fields`` to ``MCMC.run``:
        the fields that record the acceptance rate (``"accept_prob"`` for pgm_rl's kernels,
        ``"hmc_state.accept_prob"`` for ``DiscreteHMCGibbs``), which
        :func:`pgm_rl.diagnostics.to_datatree` stores as ``sample_stats.acceptance_rate``.

    Raises
    ------
    ValueError
        When no record holds the kernel's class (e.g. NumPyro's ``DiscreteGibbs``).
    """
    by_class = {record.kernel_class: record for record in KERNELS.values()}
    for cls in type(kernel).__mro__:
        record = by_class.get(f"{cls.__module__}.{cls.__qualname__}")
        if record is not None:
            return record
    raise ValueError(
        f"kernel must be a registered kernel "
        f"({', '.join(sorted(name.rsplit('.', 1)[1] for name in by_class))}); got a "
        f"{type(kernel).__name__}: pass chain_method and extra_fields to MCMC yourself"
    )


def _record(name):
    if not isinstance(name, str) or name not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {name!r}")
    return KERNELS[name]
