"""The argument types of ``pgm-rl``'s options: each parses one string or says why not.

argparse turns an ``ArgumentTypeError`` into a one-line usage error (exit code 2). The kernel
names are read from :data:`pgm_rl.kernels.registry.KERNELS`, which imports no kernel, JAX or
NumPyro, so ``pgm-rl --help`` still answers at once.
"""

import argparse
import math
import re

from pgm_rl.kernels.registry import KERNELS

# The kernels that take ``--proposal``: those with a ``proposal`` parameter taking a policy.
PROPOSAL_KERNELS = tuple(
    name
    for name, record in KERNELS.items()
    if any(param.name == "proposal" and param.type is object for param in record.params)
)
# How the help shows the value of a parameter ``--kernel-arg`` can set (the types
# :func:`pgm_rl.kernels.registry.parse_kernel_args` reads from text).
_VALUE_TEXT = {int: "INT", float: "FLOAT", bool: "true|false", str: "TEXT", tuple: "FLOAT,..."}


def _int_at_least(minimum):
    """An argparse type: an int >= ``minimum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {value}")
        return value

    return parse


nonnegative_int = _int_at_least(0)
positive_int = _int_at_least(1)


def prng_seed(text):
    """An argparse type: a PRNG seed in [0, 2**32), the seeds every JAX mode keys alike."""
    value = nonnegative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be an int in [0, 2**32), got {value}")
    return value


def inverse_temperature(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def cell(text):
    try:
        row, col = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be ROW,COL (two ints), got {text!r}") from None
    return row, col


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_kwargs(text):
    """An argparse type: ``key=value,...`` -> dict; values true/false, none, ints, floats, else str."""
    kwargs = {}
    for item in text.split(","):
        item = item.strip()
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not _KEY.fullmatch(key):
            raise argparse.ArgumentTypeError(
                f"must be KEY=VALUE pairs separated by commas (KEY a Python name), got {item!r} "
                f"in {text!r}"
            )
        if key in kwargs:
            raise argparse.ArgumentTypeError(f"gives {key!r} twice: {text!r}")
        if not value:
            raise argparse.ArgumentTypeError(f"gives {key!r} no value: {text!r}")
        kwargs[key] = _env_value(value)
    return kwargs


def _env_value(text):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def kernel_name(text):
    """An argparse type: a name of the kernel registry."""
    if text not in KERNELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(KERNELS)}; got {text!r}")
    return text


def kernel_names(text):
    """An argparse type: distinct comma-separated registry names, at least one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in KERNELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated names from {', '.join(KERNELS)}; got {text!r}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"names a kernel twice: {text!r}")
    return names


def kernel_list(params=False):
    """The registered kernels with their one-line summaries (shown by ``--help``); with
    ``params``, under each kernel the parameters ``--kernel-arg NAME=VALUE`` sets."""
    width = max(map(len, KERNELS))
    where = "; under each, what --kernel-arg NAME=VALUE sets" if params else ""
    lines = [f"kernels (from pgm_rl.kernels.registry; * = NumPyro's own{where}):"]
    for name, record in KERNELS.items():
        mark = "*" if record.builtin else " "
        lines.append(f"  {name:<{width}} {mark} {record.summary}")
        for param in record.params if params else ():
            if param.type in _VALUE_TEXT:
                value = "|".join(map(str, param.choices or ())) or _VALUE_TEXT[param.type]
                text = f"{param.name}={value} (default {param.default}): {param.help}"
            else:  # a Python object (a policy: --proposal), not text
                text = f"{param.name}: {param.help}"
            lines.append(f"  {'':<{width}}     {text}")
    return "\n".join(lines)
