"""pgm_rl: control as inference (planning and RL as probabilistic inference) with NumPyro and ArviZ.

The public names below are imported lazily, on first use (``pgm_rl.solve``, ``from pgm_rl
import GridWorld``), so ``import pgm_rl`` and ``import pgm_rl.exact`` do not load ArviZ and
``pgm-rl --help`` answers at once. Pictures live in ``pgm_rl.plots`` (it loads matplotlib).
"""

import importlib

# Public name -> the module that defines it (a submodule of its own when the two are equal).
_EXPORTS = {
    "ACTION_NAMES": "pgm_rl.worlds",
    "CheckpointedPosterior": "pgm_rl.exact",
    "CheckpointedSoftBellman": "pgm_rl.exact",
    "ExactPosterior": "pgm_rl.exact",
    "GridWorld": "pgm_rl.worlds",
    "PolicyEvaluation": "pgm_rl.exact",
    "SMCResult": "pgm_rl.smc",
    "SoftBellmanPolicy": "pgm_rl.exact",
    "TabularMDP": "pgm_rl.worlds",
    "Trajectory": "pgm_rl.model",
    "compare": "pgm_rl.compare",
    "control": "pgm_rl.control",
    "diagnostics": "pgm_rl.diagnostics",
    "envs": "pgm_rl.envs",
    "evaluate_policy": "pgm_rl.exact",
    "exact": "pgm_rl.exact",
    "io": "pgm_rl.io",
    "irl": "pgm_rl.irl",
    "kernels": "pgm_rl.kernels",
    "rollout": "pgm_rl.dynamics",
    "run_smc": "pgm_rl.smc",
    "smc": "pgm_rl.smc",
    "soft_bellman": "pgm_rl.exact",
    "solve": "pgm_rl.exact",
    "trajectory_model": "pgm_rl.model",
    "trajectory_target": "pgm_rl.model",
    "variational": "pgm_rl.variational",
    "worlds": "pgm_rl.worlds",
}

__all__ = [
    "ACTION_NAMES",
    "CheckpointedPosterior",
    "CheckpointedSoftBellman",
    "ExactPosterior",
    "GridWorld",
    "PolicyEvaluation",
    "SMCResult",
    "SoftBellmanPolicy",
    "TabularMDP",
    "Trajectory",
    "compare",
    "control",
    "diagnostics",
    "envs",
    "evaluate_policy",
    "exact",
    "io",
    "irl",
    "kernels",
    "rollout",
    "run_smc",
    "smc",
    "soft_bellman",
    "solve",
    "trajectory_model",
    "trajectory_target",
    "variational",
    "worlds",
]


def __getattr__(name):
    """Import the module behind a public name on first use and cache the name here."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pgm_rl' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"pgm_rl.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
