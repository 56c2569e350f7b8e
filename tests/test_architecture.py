"""The shape of the package (docs/architecture.md): layers, no cycles, short modules, one reader
of a world's kind. Read from the source with ``ast``: nothing is imported."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pgm_rl"
MAX_LINES = 600
KIND_FLAGS = {"is_deterministic", "has_random_dynamics", "has_random_start"}

# Layer of each top-level module or package (docs/architecture.md): imports go down or sideways.
LAYERS = {
    "_checks": 0,
    "_sampling": 0,
    "_mesh": 0,
    "worlds": 1,
    "envs": 1,
    "gym": 1,
    "dynamics": 2,
    "messages": 2,
    "particles": 2,
    "exact": 3,
    "smc": 3,
    "irl": 3,
    "model": 4,
    "kernels": 5,
    "control": 5,
    "variational": 5,
    "diagnostics": 6,
    "compare": 6,
    "io": 6,
    "plots": 6,
    "cli": 7,
}
# Libraries a layer may not load, with the lowest layer that may.
HEAVY = {"numpyro": 3, "arviz_base": 6, "arviz_stats": 6, "arviz_plots": 6, "matplotlib": 6}


def modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(path, known):
    """The pgm_rl modules and the third-party top-level names ``path`` imports (anywhere)."""
    own, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "pgm_rl":
                other.add(name.split(".")[0])
                continue
            while name not in known:
                name = name.rsplit(".", 1)[0]
            own.add(name)
    return own, other


def layer(module):
    top = module.split(".")[1] if "." in module else None
    return LAYERS[top] if top is not None else None


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return known, {name: imports(path, known) for name, path in known.items()}


def test_every_module_has_a_layer(graph):
    known, _ = graph
    missing = sorted({m.split(".")[1] for m in known if "." in m} - set(LAYERS))
    assert not missing, f"add {missing} to LAYERS and to docs/architecture.md"


def test_imports_point_down_or_sideways(graph):
    _, edges = graph
    upward = [
        f"{module} -> {target}"
        for module, (own, _) in edges.items()
        for target in own
        if layer(module) is not None and layer(target) is not None
        if layer(target) > layer(module)
    ]
    assert not upward


def test_low_layers_load_no_numpyro_arviz_or_matplotlib(graph):
    _, edges = graph
    loaded = [
        f"{module} imports {name}"
        for module, (_, other) in edges.items()
        for name in other
        if name in HEAVY and layer(module) is not None and layer(module) < HEAVY[name]
    ]
    assert not loaded


def test_no_import_cycles(graph):
    _, edges = graph
    own = {module: {t for t in targets if t != module} for module, (targets, _) in edges.items()}
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(own.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(own):
        if module not in state:
            visit(module, [module])
    # A package's __init__ re-exporting its own submodules is not a cycle of meaning.
    real = [c for c in cycles if len({m.split(".")[1] if "." in m else m for m in c}) > 1]
    assert not real, real


def test_no_module_is_longer_than_the_limit():
    long = {
        name: len(path.read_text().splitlines())
        for name, path in modules().items()
        if len(path.read_text().splitlines()) > MAX_LINES
    }
    assert not long


def test_only_the_worlds_read_a_worlds_kind():
    """Everything else works over outcomes, or asks ``pgm_rl.worlds`` (latent_sites,
    describe_randomness, require_deterministic) where the mathematics differs."""
    readers = [
        f"{name}:{node.lineno}"
        for name, path in modules().items()
        if not name.startswith("pgm_rl.worlds")
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Attribute) and node.attr in KIND_FLAGS)
        or (isinstance(node, ast.Constant) and node.value in KIND_FLAGS)
    ]
    assert not readers
