"""The one kernel contract and the registry's parameters.

Every pgm_rl kernel module gives ``init(key, world, horizon, beta, **params) -> state`` and
``build_kernel(world, horizon, **params) -> step(key, state, beta) -> (state, info)``, its
state carrying ``actions`` (T,), ``outcomes`` (T,) and ``start`` () on every world; every
record declares its constructor's parameters, which ``make_kernel`` passes on and
``parse_kernel_args`` reads from text.
"""

import importlib
import inspect

import jax
import numpy as np
import pytest
from stochastic_cases import RANDOM_START

import pgm_rl
from pgm_rl.kernels import KERNELS, KernelParam, make_kernel, parse_kernel_args

HORIZON, BETA = 3, 0.7
DETERMINISTIC = pgm_rl.GridWorld([[0.0, 1.0], [-1.0, 2.0]], (0, 0))
OURS = [name for name, record in KERNELS.items() if not record.builtin]
# Small ensembles for speed; every other parameter at its default.
PURE_PARAMS = {"particle-gibbs": {"num_particles": 4}, "guided-particle-gibbs": {"num_particles": 4},
               "replica-exchange": {"num_rungs": 3}}  # fmt: skip


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize(
    "world", [DETERMINISTIC, RANDOM_START], ids=["deterministic", "stochastic"]
)
def test_every_kernel_module_follows_the_contract(name, world):
    record = KERNELS[name]
    if not record.targets_posterior and world is RANDOM_START:
        pytest.skip("the per-step sampler refuses stochastic worlds (tested in test_registry)")
    module = importlib.import_module(record.module)
    params = PURE_PARAMS.get(name, {})
    state = module.init(jax.random.key(0), world, HORIZON, BETA, **params)
    step = jax.jit(module.build_kernel(world, HORIZON, **params))
    for key in jax.random.split(jax.random.key(1), 3):
        state, info = step(key, state, BETA)
    assert state.actions.shape == (HORIZON,) and state.outcomes.shape == (HORIZON,)
    assert np.shape(state.start) == ()
    assert 0.0 <= float(info.accept_prob) <= 1.0
    states, _ = pgm_rl.rollout(world, state.actions, state.start, state.outcomes)
    assert np.all(np.asarray(states) < world.n_states)  # a possible trajectory of the world


def _constructor(record):
    if record.builder is not None:
        return record.builder
    module, cls = record.kernel_class.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


@pytest.mark.parametrize("name", list(KERNELS))
def test_record_params_are_the_constructor_keywords_with_their_defaults(name):
    record = KERNELS[name]
    signature = inspect.signature(_constructor(record))
    keywords = {key: p.default for key, p in list(signature.parameters.items())[1:]}
    assert {param.name for param in record.params} == set(keywords)
    for param in record.params:
        assert isinstance(param, KernelParam) and param.help
        assert param.default == keywords[param.name], param.name
        assert param.choices is None or param.default in param.choices


def test_make_kernel_passes_params_and_refuses_unknown_ones():
    assert make_kernel("particle-gibbs", num_particles=64).num_particles == 64
    assert make_kernel("action-gibbs", proposal="mh").proposal == "mh"
    assert make_kernel("suffix-mh", block_size=2).block_size == 2
    kernel = make_kernel("replica-exchange", base_kernel="particle-gibbs",
                         base_params={"num_particles": 8}, num_rungs=3)  # fmt: skip
    assert kernel.base_params == {"num_particles": 8} and kernel.num_rungs == 3
    with pytest.raises(ValueError, match=r"'particles' is not a parameter.*num_particles \(an int"):
        make_kernel("particle-gibbs", particles=64)
    with pytest.raises(ValueError, match="trajectory-mh takes no arguments"):
        make_kernel("trajectory-mh", proposal="mh")
    with pytest.raises(ValueError, match="num_particles"):
        make_kernel("particle-gibbs", num_particles=1)  # the constructor checks the value
    with pytest.raises(ValueError, match="'num_particle' is not a parameter of particle-gibbs"):
        make_kernel("replica-exchange", base_kernel="particle-gibbs",
                    base_params={"num_particle": 8})  # fmt: skip


def test_parse_kernel_args_converts_to_the_declared_types():
    assert parse_kernel_args("particle-gibbs", ["num_particles=1024"]) == {"num_particles": 1024}
    assert parse_kernel_args("suffix-mh", ["block_size=3"]) == {"block_size": 3}
    assert parse_kernel_args("suffix-mh", ["block_size=None"]) == {"block_size": None}
    assert parse_kernel_args("action-gibbs", ["proposal=mh"]) == {"proposal": "mh"}
    assert parse_kernel_args("replica-exchange", ["betas=1,0.5,0", "num_rungs=3"]) == {
        "betas": (1.0, 0.5, 0.0),
        "num_rungs": 3,
    }
    assert parse_kernel_args("discrete-hmc-gibbs", ["modified=true"]) == {"modified": True}
    assert parse_kernel_args("mixed-hmc", ["trajectory_length=2.5"]) == {"trajectory_length": 2.5}
    assert parse_kernel_args("trajectory-mh", None) == {} == parse_kernel_args("suffix-mh", [])
    # the base kernel's own parameters, read against the base kernel's record
    assert parse_kernel_args(
        "replica-exchange", ["base_kernel=particle-gibbs", "base.num_particles=16"]
    ) == {"base_kernel": "particle-gibbs", "base_params": {"num_particles": 16}}


@pytest.mark.parametrize(
    ("name", "item", "words"),
    [
        ("particle-gibbs", "num_particles=many", r"num_particles must be an int, got 'many'"),
        ("particle-gibbs", "num_particles", r"must be NAME=VALUE, got 'num_particles'"),
        ("particle-gibbs", "particles=8", r"'particles' is not a parameter of particle-gibbs; "
                                          r"allowed: num_particles \(an int, default 256\)"),
        ("action-gibbs", "proposal=metropolis", r"proposal must be one of gibbs, mh; got"),
        ("replica-exchange", "base_kernel=stepwise-mh", r"base_kernel must be one of"),
        ("particle-gibbs", "proposal=policy.nc", r"proposal takes a Python object"),
        ("mixed-hmc", "trajectory_length=nan", r"trajectory_length must be a finite float"),
        ("discrete-hmc-gibbs", "modified=maybe", r"modified must be true or false"),
        ("suffix-mh", "block_size=2.5", r"block_size must be an int or none"),
        ("trajectory-mh", "x=1", r"trajectory-mh takes no arguments"),
        ("replica-exchange", "base.num_particles=8", r"suffix-mh takes|not a parameter of suffix"),
    ],
)  # fmt: skip
def test_parse_kernel_args_names_what_is_wrong(name, item, words):
    with pytest.raises(ValueError, match=words):
        parse_kernel_args(name, [item])


def test_parse_kernel_args_refuses_repeats_and_unknown_kernels():
    with pytest.raises(ValueError, match="'num_particles' is given twice"):
        parse_kernel_args("particle-gibbs", ["num_particles=8", "num_particles=16"])
    with pytest.raises(ValueError, match="kernel must be one of"):
        parse_kernel_args("nuts", [])
