"""Reward machines: the product MDP against brute force, its index maps, absorbing terminal
states, the satisfaction probability, bad input, the reference format's loader, and the office
world's tasks against the reference code's value iteration."""

import ast
import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC
from scipy.special import logsumexp

import pgm_rl
from pgm_rl import _checks
from pgm_rl.envs import (
    OFFICE_TASKS,
    GridWorld,
    RewardMachine,
    RewardMachineMDP,
    TabularMDP,
    load_reward_machine,
    office_labels,
    office_tasks,
    office_world,
    satisfaction_probability,
    with_reward_machine,
)
from pgm_rl.exact import most_probable_path

# "visit A, then B; entering C before B fails (the sink 3)": A pays 1, B pays 2.
A_THEN_B = RewardMachine(
    {(0, "A"): (1, 1.0), (1, "B"): (2, 2.0), (0, "C"): (3, 0.0), (1, "C"): (3, 0.0)},
    initial=0,
    terminal=[2],
)
# 2x2 grid: A at (0, 1), B at (1, 1), C at (1, 0); start (0, 0).
GRID_LABELS = ["", "A", "C", "B"]


def brute_force(env, machine, labels, horizon, beta, keep_base_reward=True):
    """Enumerate every start, action and outcome sequence, running the machine by hand.

    Returns log Z, the product state marginals (T + 1, S * U) and the satisfaction probability.
    """
    n_machine = machine.n_states
    states, probs = np.asarray(env.outcome_states), np.asarray(env.outcome_probs)
    rewards = np.asarray(env.outcome_rewards)
    here = np.arange(env.n_states)[:, None, None]
    absorbing = (((states == here) & (rewards == 0)) | (probs == 0)).all(axis=(1, 2))
    log_w, paths = [], []
    starts = np.flatnonzero(np.asarray(env.start_probs) > 0)
    for s0 in starts:
        for actions in itertools.product(range(env.n_actions), repeat=horizon):
            for outcomes in itertools.product(range(env.n_outcomes), repeat=horizon):
                s, u = int(s0), machine.initial
                log_p, ret, path = math.log(env.start_probs[s0]), 0.0, [s * n_machine + u]
                for a, k in zip(actions, outcomes, strict=True):
                    if absorbing[s]:
                        log_p += 0.0 if k == 0 else -math.inf  # one outcome: stay
                    else:  # the world moves; a terminal machine state stays, paying 0
                        log_p += math.log(probs[s, a, k]) if probs[s, a, k] > 0 else -math.inf
                        step = rewards[s, a, k] if keep_base_reward else 0.0
                        s = int(states[s, a, k])
                        u, bonus = machine.transitions.get((u, labels[s]), (u, 0.0))
                        ret += step + bonus
                    path.append(s * n_machine + u)
                if log_p > -math.inf:
                    log_w.append(log_p - horizon * math.log(env.n_actions) + beta * ret)
                    paths.append(path)
    log_w, paths = np.array(log_w), np.array(paths)
    log_z = float(logsumexp(log_w))
    weights = np.exp(log_w - log_z)
    marginals = np.stack(
        [
            np.bincount(paths[:, t], weights=weights, minlength=env.n_states * n_machine)
            for t in range(horizon + 1)
        ]
    )
    done = np.isin(paths % n_machine, machine.terminal)
    return log_z, marginals, weights @ done


def slippery_random_start():
    """The 2x2 grid slipping with probability 0.3, a terminal cell (1, 0) and a random start."""
    grid = GridWorld([[0.0, -0.5], [0.2, 0.3]], (0, 0), slip=0.3, terminal=[(1, 0)])
    start = np.array([0.5, 0.0, 0.0, 0.5])
    return TabularMDP.from_outcomes(
        grid.outcome_states, grid.outcome_probs, grid.outcome_rewards, start
    )


@pytest.mark.parametrize(
    ("make_env", "horizon", "keep"),
    [
        (lambda: GridWorld([[0.0, -0.5], [0.2, 0.3]], (0, 0)), 4, True),
        (lambda: GridWorld([[0.0, -0.5], [0.2, 0.3]], (0, 0)), 3, False),
        (slippery_random_start, 3, True),
    ],
    ids=["deterministic", "machine-reward-only", "slip-random-start-terminal-cell"],
)
def test_product_matches_brute_force(make_env, horizon, keep):
    env = make_env()
    product = with_reward_machine(env, A_THEN_B, GRID_LABELS, keep_base_reward=keep)
    assert isinstance(product, TabularMDP) and product.n_states == 4 * 4
    log_z, marginals, satisfied = brute_force(env, A_THEN_B, GRID_LABELS, horizon, 0.8, keep)
    posterior = pgm_rl.solve(product, horizon, 0.8)
    assert float(posterior.log_z) == pytest.approx(log_z, abs=1e-10)
    np.testing.assert_allclose(posterior.state_marginals, marginals, atol=1e-10)
    np.testing.assert_allclose(satisfaction_probability(posterior, product), satisfied, atol=1e-10)
    assert satisfied[-1] > 0.05  # the check has something to check


def test_index_maps_are_vectorised_and_round_trip():
    product = with_reward_machine(GridWorld(np.zeros((2, 2)), (0, 0)), A_THEN_B, GRID_LABELS)
    i = np.arange(product.n_states).reshape(4, 4)
    s, u = product.base_state(i), product.machine_state(i)
    assert s.shape == u.shape == (4, 4)
    np.testing.assert_array_equal(s, i // 4)
    np.testing.assert_array_equal(u, i % 4)
    np.testing.assert_array_equal(product.product_state(s, u), i)
    np.testing.assert_array_equal(product.base_state(jnp.asarray(i)), i // 4)  # jnp in, jnp out
    jax.jit(product.machine_state)(jnp.arange(3))  # traced indices pass unchecked
    np.testing.assert_array_equal(product.terminal_states, [2, 6, 10, 14])
    assert product.start_state == 0 * 4 + A_THEN_B.initial
    with pytest.raises(ValueError, match=r"i must lie in \[0, 16\)"):
        product.base_state([16])
    with pytest.raises(TypeError, match="i must hold integers"):
        product.machine_state([0.5])


def test_product_is_a_pytree_that_keeps_its_machine():
    product = with_reward_machine(GridWorld(np.zeros((2, 2)), (0, 0)), A_THEN_B, GRID_LABELS)
    leaves, tree = jax.tree_util.tree_flatten(product)
    again = jax.tree_util.tree_unflatten(tree, leaves)
    assert isinstance(again, RewardMachineMDP) and again.machine == A_THEN_B
    assert again.labels == tuple(GRID_LABELS) and isinstance(again.base, GridWorld)
    assert jax.jit(lambda p: p.outcome_rewards.sum())(product) == product.outcome_rewards.sum()


def test_terminal_machine_states_stay_and_terminal_cells_are_absorbing():
    """The machine stops when the task is done while the world goes on (with its own rewards);
    a terminal cell of the world stays absorbing and the machine does not move there."""
    grid = GridWorld(np.array([[0.0, 0.5], [0.25, 0.0]]), (0, 0), terminal=[(1, 1)])
    product = with_reward_machine(grid, A_THEN_B, GRID_LABELS)
    done = product.terminal_states
    ns, rewards = np.asarray(product.next_state), np.asarray(product.reward)
    np.testing.assert_array_equal(
        product.machine_state(ns[done]), product.machine_state(done)[:, None] + 0 * ns[done]
    )
    base_ns, base_rewards = np.asarray(grid.next_state), np.asarray(grid.reward)
    world = product.base_state(done)
    np.testing.assert_array_equal(product.base_state(ns[done]), base_ns[world])
    np.testing.assert_array_equal(rewards[done], base_rewards[world])  # the world's alone
    # the terminal cell (1, 1) = B: the machine does not move there any more
    cell = product.product_state(np.full(4, 3), np.arange(4))
    np.testing.assert_array_equal(ns[cell], np.repeat(cell[:, None], 5, axis=1))
    posterior = pgm_rl.solve(product, 6, 1.0)
    satisfied = satisfaction_probability(posterior, product)
    assert satisfied[0] == 0.0 and np.all(np.diff(satisfied) >= -1e-12) and satisfied[-1] > 0.5


def test_satisfaction_probability_from_draws_matches_exact():
    product = with_reward_machine(GridWorld(np.zeros((2, 2)), (0, 0)), A_THEN_B, GRID_LABELS)
    posterior = pgm_rl.solve(product, 5, 1.0)
    exact = satisfaction_probability(posterior, product)
    np.testing.assert_array_equal(
        exact, satisfaction_probability(np.asarray(posterior.state_marginals), product)
    )
    draws = posterior.sample(jax.random.key(0), 20000)
    sampled = satisfaction_probability(np.asarray(draws["states"]).reshape(4, 5000, 6), product)
    assert sampled.shape == (6,)
    se = np.sqrt(exact * (1 - exact) / 20000)
    assert np.all(np.abs(sampled - exact) <= 5 * se + 1e-12)


def test_satisfaction_probability_refuses_other_input():
    product = with_reward_machine(GridWorld(np.zeros((2, 2)), (0, 0)), A_THEN_B, GRID_LABELS)
    with pytest.raises(TypeError, match="product"):
        satisfaction_probability(np.zeros((3, 16)), GridWorld(np.zeros((2, 2)), (0, 0)))
    with pytest.raises(ValueError, match=r"\(T \+ 1, 16\)"):
        satisfaction_probability(np.zeros((3, 4)), product)
    with pytest.raises(ValueError, match="states must lie"):
        satisfaction_probability(np.array([[0, 16]]), product)
    with pytest.raises(TypeError, match="source"):
        satisfaction_probability(np.array(["a"]), product)


GRID = GridWorld(np.zeros((2, 2)), (0, 0))


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: with_reward_machine(GRID, A_THEN_B, ["", "A", "B"]), ValueError, ["labels", "4"]),
        (lambda: with_reward_machine(GRID, A_THEN_B, "ACB."), TypeError, ["labels"]),
        (lambda: with_reward_machine(GRID, A_THEN_B, ["", 1, "B", "C"]), TypeError, ["labels"]),
        (
            lambda: with_reward_machine(GRID, A_THEN_B, ["", "A", "X", "B"]),
            ValueError,
            ["machine", "['C']", "labels"],
        ),
        (lambda: with_reward_machine(GRID, {}, GRID_LABELS), TypeError, ["machine"]),
        (lambda: with_reward_machine(np.zeros(3), A_THEN_B, GRID_LABELS), TypeError, ["env"]),
        (
            lambda: with_reward_machine(GRID, A_THEN_B, GRID_LABELS, keep_base_reward=1),
            TypeError,
            ["keep_base_reward"],
        ),
        (lambda: RewardMachine([((0, "a"), (1, 0.0))]), TypeError, ["transitions"]),
        (lambda: RewardMachine({(0, 1): (1, 0.0)}), TypeError, ["event a str"]),
        (lambda: RewardMachine({(0, "a"): 1}), TypeError, ["(u_next, reward)"]),
        (lambda: RewardMachine({(0, "a"): (-1, 0.0)}), ValueError, ["next state", ">= 0"]),
        (lambda: RewardMachine({(0, "a"): (1, math.nan)}), ValueError, ["finite"]),
        (lambda: RewardMachine({(0, "a"): (1, True)}), TypeError, ["reward"]),
        (lambda: RewardMachine({}, initial=1.0), TypeError, ["initial"]),
        (lambda: RewardMachine({}, terminal=3), TypeError, ["terminal"]),
        (
            lambda: RewardMachine({(1, "a"): (0, 0.0)}, terminal=[1]),
            ValueError,
            ["terminal state 1", "absorbing"],
        ),
    ],
)
def test_bad_input_is_refused_by_name(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), str(raised.value)


def test_unreachable_terminal_states_warn():
    with pytest.warns(UserWarning, match="machine: no terminal state"):
        RewardMachine({(0, "a"): (1, 0.0)}, terminal=[2])
    # only the event "" (no label) finishes, and every state is labelled
    machine = RewardMachine({(0, ""): (1, 1.0)}, terminal=[1])
    with pytest.warns(UserWarning, match="labels' events cannot lead the machine there"):
        with_reward_machine(GRID, machine, ["A", "A", "A", "A"])
    # the world cannot enter the labelled cells in the needed order: B is behind a terminal cell
    grid = GridWorld(np.zeros((1, 3)), (0, 0), terminal=[(0, 1)])
    machine = RewardMachine({(0, "A"): (1, 0.0), (1, "B"): (2, 1.0)}, terminal=[2])
    with pytest.warns(UserWarning, match="world's moves never enter"):
        with_reward_machine(grid, machine, ["A", "", "B"])


def test_a_product_too_large_for_memory_is_refused_first(monkeypatch):
    monkeypatch.setattr(_checks, "_memory_limit", lambda: (2**20, "a test limit"))
    big = RewardMachine({(0, "A"): (9999, 0.0)})
    with pytest.raises(ValueError, match=r"machine=<10000 states> needs about .* product"):
        with_reward_machine(GRID, big, GRID_LABELS)


# ----------------------------------------------------------------------------- the loader


def test_loader_reads_the_reference_format(tmp_path):
    machine = load_reward_machine(OFFICE_TASKS["t1"])
    assert machine.initial == 0 and machine.terminal == (2,) and machine.n_states == 4
    assert machine.transitions == {
        (0, "f"): (1, 0.0),
        (0, "n"): (3, 0.0),  # no formula of 0 accepts n: the sink (the reference stops there)
        (1, "g"): (2, 1.0),
        (1, "n"): (3, 0.0),
    }
    path = tmp_path / "t1.txt"
    path.write_text(OFFICE_TASKS["t1"])
    assert load_reward_machine(str(path)) == machine == load_reward_machine(path)
    # a formula true of events it does not name moves on them when they are given
    text = "0\n[1]\n(0,1,'!a',ConstantRewardFunction(2))\n(0,0,'a',ConstantRewardFunction(0))\n"
    assert load_reward_machine(text).transitions == {(0, ""): (1, 2.0)}
    assert load_reward_machine(text, events=["a", "b"]).transitions == {
        (0, ""): (1, 2.0),
        (0, "b"): (1, 2.0),
    }
    assert load_reward_machine("0\n[1]\n(0,1,'True',ConstantRewardFunction(1))").transitions[
        (0, "")
    ] == (1, 1.0)


def test_office_tasks_load_with_a_sink_each():
    tasks, plain = office_tasks(), office_tasks(step_reward=0.0)
    assert sorted(tasks) == ["t1", "t2", "t3", "t4"]
    for name, machine in tasks.items():
        sink = machine.n_states - 1
        assert plain[name].transitions[(machine.initial, "n")] == (sink, 0.0)
        assert sink not in machine.terminal
        # every step before the task is done costs step_reward, the sink's included
        assert machine.transitions[(machine.initial, "n")] == (sink, -1.0)
        assert machine.transitions[(sink, "")] == (sink, -1.0)
        assert machine.transitions[(machine.initial, "")] == (machine.initial, -1.0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0\n", ["initial state", "terminal states"]),
        ("zero\n[1]\n", ["line 1", "initial state"]),
        ("0\n2\n", ["line 2", "list of ints"]),
        ("0\n[1]\n(0,1,'a')\n", ["line 3", "ConstantRewardFunction(r)"]),
        ("0\n[1]\n(0,1,'a',Other(1))\n", ["line 3", "only ConstantRewardFunction"]),
        ("0\n[1]\n(0,1,'a+b',ConstantRewardFunction(1))\n", ["line 3", "'a+b'"]),
        ("0\n[1]\n(0,1,'a&',ConstantRewardFunction(1))\n", ["line 3", "formula"]),
        (
            "0\n[2]\n(0,1,'a',ConstantRewardFunction(0))\n(0,2,'!b',ConstantRewardFunction(1))\n",
            ["lines 3, 4", "state 0", "'a'"],
        ),
        ("/no/such/machine.txt", ["machine file", "/no/such/machine.txt"]),
    ],
)
def test_loader_errors_name_the_file_and_line(text, words):
    with pytest.raises(ValueError) as raised:
        load_reward_machine(text)
    for word in words:
        assert word in str(raised.value), str(raised.value)


# ----------------------------------------------------------------------------- the office world


def test_office_world_map_labels_and_walls():
    env, labels = office_world(), office_labels()
    assert (env.n_states, env.n_actions, env.start_state) == (108, 4, 86)
    assert labels[env.start_state] == "" and labels.count("n") == 6 and labels.count("f") == 2
    assert labels[1 * 12 + 1] == "b" and labels[4 * 12 + 4] == "g"  # (x, y) = (1, 7) and (4, 4)
    ns = np.asarray(env.next_state)
    assert ns[86, 0] == 74 and ns[86, 2] == 85 and ns[86, 3] == 87  # up, left, right: open
    assert ns[86, 1] == 98  # down to (2, 0), the room's bottom row
    assert ns[98, 1] == 98  # the outer wall
    assert ns[87, 2] == 86  # (3, 1) -> (2, 1): back through the door
    assert ns[74, 3] == 74  # (2, 2) -> (3, 2): a wall between the rooms
    assert np.all(np.asarray(env.reward) == 0.0)
    with pytest.raises(ValueError, match="step_reward"):
        office_tasks(math.inf)


_REF_MOVE = {"up": (0, 1), "right": (1, 0), "down": (0, -1), "left": (-1, 0)}


def _reference_office():
    """The reference OfficeWorld.get_model (in its own (x, y) coordinates): S, A, L, T."""
    forbidden = set()
    for x in range(12):
        for y in (0, 3, 6):
            forbidden |= {(x, y, "down"), (x, y + 2, "up")}
    for y in range(9):
        for x in (0, 3, 6, 9):
            forbidden |= {(x, y, "left"), (x + 2, y, "right")}
    for y in (1, 7):
        for x in (2, 5, 8):
            forbidden -= {(x, y, "right"), (x + 1, y, "left")}
    for x in (1, 4, 7, 10):
        forbidden -= {(x, 5, "up"), (x, 6, "down")}
    for x in (1, 10):
        forbidden -= {(x, 2, "up"), (x, 3, "down")}
    objects = {(1, 1): "a", (1, 7): "b", (10, 7): "c", (10, 1): "d", (7, 4): "e", (8, 2): "f"}
    objects |= {(3, 6): "f", (4, 4): "g", (4, 1): "n", (7, 1): "n", (4, 7): "n", (7, 7): "n"}
    objects |= {(1, 4): "n", (10, 4): "n"}
    states = [(x, y) for x in range(12) for y in range(9)]
    moves = {}
    for x, y in states:
        for a, (dx, dy) in _REF_MOVE.items():
            moves[((x, y), a)] = (x, y) if (x, y, a) in forbidden else (x + dx, y + dy)
    return states, list(_REF_MOVE), objects, moves


def _evaluate_dnf(formula, true_props):
    """The reference's evaluate_dnf."""
    if "|" in formula:
        return any(_evaluate_dnf(f, true_props) for f in formula.split("|"))
    if "&" in formula:
        return all(_evaluate_dnf(f, true_props) for f in formula.split("&"))
    if formula.startswith("!"):
        return not _evaluate_dnf(formula[1:], true_props)
    if formula in ("True", "False"):
        return formula == "True"
    return formula in true_props


def _reference_machine(text):
    """The reference RewardMachine: its states U, u0 and step(u, props) -> (u2, r, done)."""
    lines = [line.split("#")[0].strip() for line in text.strip().splitlines()]
    u0, terminal = ast.literal_eval(lines[0]), ast.literal_eval(lines[1])
    delta = {}
    for line in lines[2:]:
        u1, u2, phi, r = re.fullmatch(
            r"\((\d+),(\d+),'([^']*)',ConstantRewardFunction\((-?\d+)\)\)", line
        ).groups()
        u1, u2 = int(u1), int(u2)
        if u1 in terminal:
            continue
        delta.setdefault(u1, {})[phi] = (-1 if u2 in terminal else u2, float(r))
    states = sorted(set(delta) | {u for d in delta.values() for u, _ in d.values()} - {-1})

    def step(u1, props):
        for phi, (u2, r) in delta[u1].items():
            if _evaluate_dnf(phi, props):
                return u2, r, u2 == -1
        return -1, 0.0, True

    return states, u0, step


def reference_optimal_steps(text, gamma=0.9):
    """The reference's value iteration (envs/grids/value_iteration.py) on the office world, then
    its greedy policy run from the start: the number of steps until the task is done."""
    states, actions, labels, moves = _reference_office()
    machine_states, u0, step = _reference_machine(text)
    values = {(s, u): 0.0 for s in states for u in machine_states}

    def q_values(s1, u1):
        out = []
        for a in actions:
            s2 = moves[(s1, a)]
            u2, r, done = step(u1, labels.get(s2, ""))
            out.append(r if done else r + gamma * values[(s2, u2)])
        return out

    error = 1.0
    while error > 1e-7:
        error = 0.0
        for s1 in states:
            for u1 in machine_states:
                new = max(q_values(s1, u1))
                error = max(error, abs(new - values[(s1, u1)]))
                values[(s1, u1)] = new
    s, u, steps = (2, 1), u0, 0
    while True:
        q = q_values(s, u)
        a = actions[max((x, i) for i, x in enumerate(q))[1]]
        s = moves[(s, a)]
        u, r, done = step(u, labels.get(s, ""))
        steps += 1
        if done:
            assert r == 1.0 and steps < 100  # done by finishing the task, not by a plant
            return steps


def test_office_map_path_length_is_the_reference_optimum():
    """As beta grows, the posterior finishes each task in the reference's optimal number of
    steps: the MAP path does, and the posterior mass on "done by then" goes to 1."""
    env, labels, horizon = office_world(), office_labels(), 40
    found = {}
    for name, machine in office_tasks().items():
        optimum = reference_optimal_steps(OFFICE_TASKS[name])
        product = with_reward_machine(env, machine, labels)
        _, states = most_probable_path(product, horizon, 1.0)
        done = np.isin(states, product.terminal_states)
        found[name] = (optimum, int(np.argmax(done)))
        satisfied = [
            satisfaction_probability(pgm_rl.solve(product, horizon, beta), product)
            for beta in (2.0, 5.0, 20.0)
        ]
        assert all(s[optimum - 1] == 0.0 for s in satisfied)  # impossible sooner
        at_optimum = [float(s[optimum]) for s in satisfied]
        assert at_optimum == sorted(at_optimum) and at_optimum[-1] > 0.999
    assert all(optimum == steps for optimum, steps in found.values()), found
    assert {name: optimum for name, (optimum, _) in found.items()} == {
        "t1": 15,
        "t2": 29,
        "t3": 30,
        "t4": 29,
    }


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("kernel", ["SuffixMH", "ActionGibbs"])
def test_kernels_and_the_tree_run_on_the_product_unchanged(kernel):
    grid = GridWorld([[0.0, -0.5], [0.2, 0.3]], (0, 0), slip=0.1)
    product = with_reward_machine(grid, A_THEN_B, GRID_LABELS)
    posterior = pgm_rl.solve(product, 4, 1.0)
    mcmc = MCMC(
        getattr(pgm_rl.kernels, kernel)(pgm_rl.trajectory_model),
        num_warmup=50,
        num_samples=300,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(1), product, 4, 1.0)
    dt = pgm_rl.diagnostics.to_datatree(mcmc, product, posterior)
    states = pgm_rl.diagnostics.trajectory_states(dt).values
    sampled = satisfaction_probability(states, product)
    exact = satisfaction_probability(posterior, product)
    assert sampled.shape == exact.shape == (5,)
    assert abs(sampled[-1] - exact[-1]) < 0.15  # a smoke test: the statistics are elsewhere


# ----------------------------------------------------------------------------- the command line

MACHINE_TEXT = """0 # initial state
[2] # terminal state
(0,0,'!A&!C',ConstantRewardFunction(0))
(0,1,'A&!C',ConstantRewardFunction(1))
(1,1,'!B&!C',ConstantRewardFunction(0))
(1,2,'B&!C',ConstantRewardFunction(2))
"""


@pytest.fixture
def machine_files(tmp_path):
    """A 2x2 grid of zeros, its labels (A at (0, 1), C at (1, 0), B at (1, 1)) and the machine."""
    files = {"grid": "0,0\n0,0\n", "labels": ".A\nCB\n", "machine": MACHINE_TEXT}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {name: str(tmp_path / name) for name in files}


def _sample_args(files, *extra):
    return [
        "sample",
        "--kernel",
        "trajectory-mh",
        "--grid",
        files["grid"],
        "--horizon",
        "3",
        "--beta",
        "1",
        "--chains",
        "2",
        "--warmup",
        "20",
        "--samples",
        "50",
        "--no-progress",
        *extra,
    ]


def test_cli_sample_runs_on_the_product_and_draws_the_satisfaction(capsys, machine_files, tmp_path):
    from helpers import run_cli

    plots = tmp_path / "plots"
    args = _sample_args(machine_files, "--plots", plots)
    code, out, err = run_cli(
        capsys, *args, "--machine", machine_files["machine"], "--labels", machine_files["labels"]
    )
    assert code == 0, err
    assert "x reward machine of 4 states, terminal [2] (16 product states)" in out
    grid = GridWorld(np.zeros((2, 2)), (0, 0))
    product = with_reward_machine(grid, load_reward_machine(MACHINE_TEXT), GRID_LABELS)
    exact = satisfaction_probability(pgm_rl.solve(product, 3, 1.0), product)[-1]
    assert f"P(task done by step T) exact {exact:.4f}, sampled" in out
    assert (plots / "satisfaction.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"labels": ".A\n"}, ["--labels", "1 rows", "2"]),
        ({"labels": ".A\nCBx\n"}, ["--labels", "row 2", "3 characters"]),
        ({"labels": ".A\n.B\n"}, ["--machine", "['C']"]),
        ({"machine": "0\n[2]\n(0,1,'A',Other(1))\n"}, ["machine file", "line 3", "Constant"]),
        ({"machine": None}, ["machine file", "does not exist"]),
        ({"labels": None}, ["--labels", "does not exist"]),
    ],
)
def test_cli_bad_machine_or_labels_give_one_line(capsys, machine_files, change, words):
    from helpers import assert_one_line_error, run_cli

    for name, text in change.items():
        if text is None:
            machine_files[name] += ".missing"
        else:
            with open(machine_files[name], "w") as handle:
                handle.write(text)
    args = _sample_args(machine_files)
    result = run_cli(
        capsys, *args, "--machine", machine_files["machine"], "--labels", machine_files["labels"]
    )
    assert_one_line_error(result, *words)


def test_cli_machine_needs_labels(capsys, machine_files):
    from helpers import assert_one_line_error, run_cli

    result = run_cli(capsys, *_sample_args(machine_files), "--machine", machine_files["machine"])
    assert_one_line_error(result, "--machine needs --labels")
    code, out, _ = run_cli(capsys, "sample", "--help")
    assert code == 0 and "--machine FILE" in out and "--labels FILE" in out


# ----------------------------------------------------------------------------- the picture


def test_plot_satisfaction_draws_exact_and_sampled(tmp_path):
    from pgm_rl.plots import plot_satisfaction

    product = with_reward_machine(GridWorld(np.zeros((2, 2)), (0, 0)), A_THEN_B, GRID_LABELS)
    posterior = pgm_rl.solve(product, 5, 1.0)
    states = np.asarray(posterior.sample(jax.random.key(0), 400)["states"]).reshape(4, 100, 6)
    fig = plot_satisfaction(product, posterior, states, save=tmp_path / "s.png")
    lines = fig.axes[0].get_lines()
    exact = satisfaction_probability(posterior, product)
    assert any(np.allclose(line.get_ydata(), exact) for line in lines)
    assert len(lines) == 4 + 2  # each chain, pooled, exact
    assert (tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(ValueError, match="give exact"):
        plot_satisfaction(product)
    with pytest.raises(TypeError, match="product"):
        plot_satisfaction(GRID, posterior)
    with pytest.raises(ValueError, match="different horizons"):
        plot_satisfaction(product, posterior, states[..., :3])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [name for name, record in pgm_rl.kernels.KERNELS.items() if record.targets_posterior]
)
def test_every_registry_kernel_samples_the_product(name):
    """Every kernel that targets the posterior runs on the product unchanged and lands near its
    exact marginals and satisfaction probability (2x2 grid, T = 3: a run, not a statistical
    test of the kernel; StepwiseMH targets another distribution by design)."""
    product = with_reward_machine(GridWorld(np.zeros((2, 2)), (0, 0)), A_THEN_B, GRID_LABELS)
    posterior = pgm_rl.solve(product, 3, 1.0)
    mcmc, _ = pgm_rl.compare.run_kernel(name, product, 3, 1.0, chains=4, warmup=300, samples=1000)
    dt = pgm_rl.diagnostics.to_datatree(mcmc, product, posterior)
    comparison = pgm_rl.diagnostics.compare_to_exact(dt)
    assert float(comparison["mean_tv"]) < 0.05, name
    sampled = satisfaction_probability(pgm_rl.diagnostics.trajectory_states(dt).values, product)
    assert abs(sampled[-1] - satisfaction_probability(posterior, product)[-1]) < 0.05, name
