"""Every ```python block of README.md runs as written, in order, in one fresh interpreter.

The blocks run as a new user would paste them into one script (they share ``env``, ``jax`` and
``pgm_rl``), in a temporary folder (they write files). The kernel-swap block's commented
alternative, NumPyro's ``DiscreteHMCGibbs``, runs too once uncommented (at small sizes).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# The kernel swap: the commented line replaces the one above it; sizes shrink to a smoke test.
SWAP_LINE = "# kernel = DiscreteHMCGibbs(NUTS(pgm_rl.trajectory_model))"
SWAP_SIZES = (
    r"num_warmup=\d+, num_samples=\d+, num_chains=4",
    "num_warmup=20, num_samples=40, num_chains=2",
)

RUNNER = """
import json, os, sys
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for name, block in blocks:
    os.makedirs(name, exist_ok=True)
    os.chdir(name)  # each block writes into a folder of its own
    exec(compile(block, "README.md " + name, "exec"), namespace)
    os.chdir("..")
    print("ran", name, flush=True)
"""


def python_blocks(text):
    """The ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def swapped(block):
    """The kernel-swap block with its ``DiscreteHMCGibbs`` line uncommented (small sizes)."""
    lines = block.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(SWAP_LINE))
    assert lines[index - 1].startswith("kernel = "), "the alternative must follow the kernel line"
    lines[index - 1 : index + 1] = [lines[index][2:]]
    text, count = re.subn(SWAP_SIZES[0], SWAP_SIZES[1], "\n".join(lines) + "\n")
    assert count == 1, "the swap block's MCMC sizes were not found"
    return text


def run_blocks(blocks, folder):
    """Run ``[(name, source), ...]`` in order in one namespace, in a fresh interpreter."""
    path = folder / "blocks.json"
    path.write_text(json.dumps(blocks))
    env = dict(os.environ, MPLBACKEND="Agg")
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(path)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_readme_blocks_are_found():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 4
    swaps = [block for block in blocks if SWAP_LINE in block]
    assert len(swaps) == 1
    assert "kernel = DiscreteHMCGibbs(NUTS(" in swapped(swaps[0])


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path):
    """Every block in order, then the swap block again with DiscreteHMCGibbs uncommented."""
    blocks = python_blocks(README.read_text())
    named = [(f"block {i + 1}", block) for i, block in enumerate(blocks)]
    swap_name, swap = next((name, block) for name, block in named if SWAP_LINE in block)
    named.append(("block with DiscreteHMCGibbs", swapped(swap)))
    result = run_blocks(named, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for name, _ in named:
        assert f"ran {name}" in result.stdout
    # the blocks that save files wrote them where they ran
    assert (tmp_path / swap_name / "run.nc").is_file()
    assert (tmp_path / "block with DiscreteHMCGibbs" / "run.nc").is_file()
