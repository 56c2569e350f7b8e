"""``pgm-rl sample --kernel NAME --kernel-arg PARAM=VALUE``: a kernel's parameters, generically.

Before (issue 16): no kernel parameter could be set from the command line (``--kernel-arg`` was
an unknown option: exit 2 "unrecognized arguments"), and the CLI special-cased the particle
Gibbs kernels to hand them ``--proposal``. Now every parameter of a kernel's registry record is
read by :func:`pgm_rl.kernels.registry.parse_kernel_args` and reaches the kernel's constructor.
"""

import pytest
from helpers import assert_one_line_error
from helpers import run_cli as run

from pgm_rl import io
from pgm_rl.cli.options import PROPOSAL_KERNELS
from pgm_rl.kernels import particle_gibbs
from pgm_rl.kernels.registry import KERNELS

TINY = ["--horizon", "3", "--beta", "0.5"]
RUN = ["--chains", "2", "--warmup", "5", "--samples", "20", "--no-progress"]


def test_a_kernel_arg_reaches_the_kernel(capsys, tmp_path, monkeypatch):
    built = []

    class Spy(particle_gibbs.ParticleGibbs):
        def __init__(self, model, **params):
            super().__init__(model, **params)
            built.append(self.num_particles)

    monkeypatch.setattr(particle_gibbs, "ParticleGibbs", Spy)
    saved = tmp_path / "run.nc"
    code, out, err = run(
        capsys,
        "sample",
        "--kernel",
        "particle-gibbs",
        "--kernel-arg",
        "num_particles=16",
        *TINY,
        *RUN,
        "--out",
        saved,
    )
    assert code == 0, err
    assert built == [16]  # was: exit 2, "unrecognized arguments: --kernel-arg"
    assert "kernel arguments: num_particles=16" in out and "vs exact: mean TV" in out
    assert io.load(str(saved)).attrs["kernel_args"] == "num_particles=16"


def test_kernel_args_of_several_types_reach_the_kernel(capsys, monkeypatch):
    """A choice (str) and the replica-exchange ladder (int, and the base kernel's own)."""
    made = []
    record = KERNELS["replica-exchange"]

    def make(model, **params):
        made.append(params)
        raise ValueError("stop here: the parameters were seen")

    monkeypatch.setitem(KERNELS, "replica-exchange", record._replace(builder=make))
    argv = ["--kernel", "replica-exchange", *TINY, *RUN]
    kernel_args = ["num_rungs=3", "base_kernel=action-gibbs", "base.proposal=mh"]
    for item in kernel_args:
        argv += ["--kernel-arg", item]
    assert_one_line_error(run(capsys, "sample", *argv), "stop here")
    assert made == [
        {"num_rungs": 3, "base_kernel": "action-gibbs", "base_params": {"proposal": "mh"}}
    ]


@pytest.mark.parametrize(
    ("kernel", "item", "words"),
    [
        ("particle-gibbs", "particles=16", ["'particles'", "num_particles", "an int"]),
        ("particle-gibbs", "num_particles=many", ["num_particles", "an int", "'many'"]),
        ("particle-gibbs", "num_particles", ["NAME=VALUE", "'num_particles'"]),
        ("trajectory-mh", "num_particles=16", ["trajectory-mh takes no arguments"]),
        ("action-gibbs", "proposal=metropolis", ["proposal", "gibbs, mh", "'metropolis'"]),
        ("particle-gibbs", "proposal=policy.nc", ["proposal", "Python object"]),
    ],
)
def test_a_bad_kernel_arg_is_one_line_before_any_work(capsys, no_work, kernel, item, words):
    result = run(capsys, "sample", "--kernel", kernel, "--kernel-arg", item, *TINY, *RUN)
    assert_one_line_error(result, "pgm-rl sample: error: kernel argument", *words)


def test_a_value_the_kernel_refuses_is_one_line(capsys):
    result = run(
        capsys, "sample", "--kernel", "particle-gibbs", "--kernel-arg", "num_particles=1", *TINY
    )
    assert_one_line_error(result, "num_particles", ">= 2")


def test_the_proposal_kernels_are_read_from_the_registry():
    """--proposal goes to the kernels whose record takes a policy as ``proposal`` (not to
    action-gibbs, whose ``proposal`` is the text gibbs|mh)."""
    assert PROPOSAL_KERNELS == ("particle-gibbs", "guided-particle-gibbs")
