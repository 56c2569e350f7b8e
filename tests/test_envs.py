"""TabularMDP and GridWorld: the arrays every model, solver and kernel works on."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgm_rl import ACTION_NAMES, GridWorld, TabularMDP, rollout
from pgm_rl.envs import NOTEBOOK_GRID

SEED_GRID = [
    [-1, -1, -1, -10, -1, 10**4],
    [-100, -1, -10, -1, -10, -10],
    [-1, -10, -100, -10, -1, -1],
    [-1, -1, -100, -10, -1, -1],
    [-10, -1, -100, -100, -100, -1],
    [-1, -1, -100, -100, -100, -1],
]

UP, DOWN, LEFT, RIGHT, STAY = range(5)


def expected_next_cell(row, col, action, height, width):
    """Reference move, written independently of ACTION_MOVES."""
    if action == UP:
        row = max(row - 1, 0)
    elif action == DOWN:
        row = min(row + 1, height - 1)
    elif action == LEFT:
        col = max(col - 1, 0)
    elif action == RIGHT:
        col = min(col + 1, width - 1)
    return row, col


def test_action_names():
    assert ACTION_NAMES == ("up", "down", "left", "right", "stay")


def test_gridworld_attributes_match_a_plain_reference():
    rewards = np.arange(12, dtype=float).reshape(3, 4) - 5.5
    env = GridWorld(rewards, (2, 1))
    assert env.shape == (3, 4)
    assert env.n_states == 12
    assert env.n_actions == 5
    assert env.start_state == 2 * 4 + 1
    assert env.start == (2, 1)
    assert env.next_state.shape == (12, 5) and np.issubdtype(env.next_state.dtype, np.integer)
    assert env.reward.shape == (12, 5) and env.reward.dtype == np.float64
    np.testing.assert_array_equal(env.rewards, rewards)
    for row in range(3):
        for col in range(4):
            state = row * 4 + col
            for action in range(5):
                nrow, ncol = expected_next_cell(row, col, action, 3, 4)
                assert env.next_state[state, action] == nrow * 4 + ncol
                assert env.reward[state, action] == rewards[nrow, ncol]


@pytest.mark.parametrize(
    ("cell", "action", "expected"),
    [
        ((0, 1), UP, (0, 1)),  # top wall
        ((2, 1), DOWN, (2, 1)),  # bottom wall
        ((1, 0), LEFT, (1, 0)),  # left wall
        ((1, 3), RIGHT, (1, 3)),  # right wall
        ((0, 0), UP, (0, 0)),  # corner
        ((2, 3), RIGHT, (2, 3)),  # corner
        ((1, 2), STAY, (1, 2)),
        ((1, 2), UP, (0, 2)),
        ((1, 2), DOWN, (2, 2)),
        ((1, 2), LEFT, (1, 1)),
        ((1, 2), RIGHT, (1, 3)),
    ],
)
def test_moves_are_clipped_at_walls(cell, action, expected):
    rewards = np.random.default_rng(0).uniform(-2, 2, (3, 4))
    env = GridWorld(rewards, (0, 0))
    state = env.state_of(*cell)
    assert env.cell_of(int(env.next_state[state, action])) == expected
    assert env.reward[state, action] == rewards[expected]


def test_state_of_and_cell_of_round_trip():
    env = GridWorld(np.zeros((4, 7)), (3, 6))
    states = [env.state_of(row, col) for row in range(4) for col in range(7)]
    assert states == list(range(28))
    assert [env.cell_of(s) for s in states] == [(r, c) for r in range(4) for c in range(7)]
    assert env.cell_of(np.int64(9)) == (1, 2)


def test_notebook_grid_matches_the_seed():
    env = GridWorld.notebook()
    np.testing.assert_array_equal(env.rewards, np.array(SEED_GRID, dtype=float))
    np.testing.assert_array_equal(np.array(NOTEBOOK_GRID, dtype=float), SEED_GRID)
    assert env.start == (5, 0)
    assert env.start_state == 30
    assert env.shape == (6, 6)
    # the goal re-entered by staying (and by moving into the corner walls)
    goal = env.state_of(0, 5)
    assert env.reward[goal, STAY] == env.reward[goal, UP] == env.reward[goal, RIGHT] == 1e4


def test_arrays_are_read_only():
    env = GridWorld.notebook()
    for array in (env.next_state, env.reward, env.rewards):
        with pytest.raises(ValueError):
            array[0] = 0


def test_input_is_copied():
    rewards = np.zeros((2, 2))
    env = GridWorld(rewards, (0, 0))
    rewards[0, 0] = 5.0
    assert env.rewards[0, 0] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "1, 2.5, -3\n4, 5, 6e2\n",
        "1 2.5 -3\n4\t5   6e2\n",
        "# a comment\n\n1,2.5,-3\n  4 , 5 , 6e2  \n\n",
        "# rewards, one row per line\n1 2.5 -3\n4 5 6e2\n",
    ],
    ids=["csv", "whitespace", "comments-blank-lines", "comma-in-comment"],
)
def test_from_file(tmp_path, text):
    path = tmp_path / "grid.txt"
    path.write_text(text)
    env = GridWorld.from_file(path, (1, 2))
    np.testing.assert_array_equal(env.rewards, [[1.0, 2.5, -3.0], [4.0, 5.0, 600.0]])
    assert env.start_state == 5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1,2\n3\n", "rectangular"),
        ("1,abc\n3,4\n", "only numbers"),
        ("1 2\n3 nan\n", "finite"),
        ("1 2\n3 inf\n", "finite"),
        ("", "non-empty"),
    ],
)
def test_from_file_bad_content(tmp_path, text, match):
    path = tmp_path / "grid.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        GridWorld.from_file(path, (0, 0))


def test_from_file_missing(tmp_path):
    with pytest.raises(ValueError, match="grid file"):
        GridWorld.from_file(tmp_path / "nope.csv", (0, 0))


@pytest.mark.parametrize(
    ("rewards", "error", "match"),
    [
        ([[1, 2], [3]], ValueError, "rewards.*rectangular"),
        ([], ValueError, "rewards.*non-empty"),
        ([[]], ValueError, "rewards.*non-empty"),
        ([1.0, 2.0], ValueError, "rewards.*2-D"),
        (3.0, ValueError, "rewards.*2-D"),
        ([[[1.0]]], ValueError, "rewards.*2-D"),
        ([["a", "b"]], TypeError, "rewards.*real numbers"),
        ([[1.0, None]], TypeError, "rewards.*real numbers"),
        (None, TypeError, "rewards.*real numbers"),
        ([[1j, 2.0]], TypeError, "rewards.*real numbers"),
        ([[1.0, np.nan]], ValueError, "rewards.*finite"),
        ([[1.0, np.inf]], ValueError, "rewards.*finite"),
        ([[-np.inf, 1.0]], ValueError, "rewards.*finite"),
    ],
)
def test_bad_rewards(rewards, error, match):
    with pytest.raises(error, match=match):
        GridWorld(rewards, (0, 0))


@pytest.mark.parametrize(
    ("start", "error", "match"),
    [
        ((2, 0), ValueError, "start.*outside"),
        ((0, 3), ValueError, "start.*outside"),
        ((-1, 0), ValueError, "start.*outside"),
        ((0,), TypeError, "start.*pair"),
        ((0, 1, 2), TypeError, "start.*pair"),
        (3, TypeError, "start.*pair"),
        (None, TypeError, "start.*pair"),
        ((0.0, 1.0), TypeError, "start.*pair"),
        ((0, 1.5), TypeError, "start.*pair"),
        ((True, 0), TypeError, "start.*pair"),
    ],
)
def test_bad_start(start, error, match):
    with pytest.raises(error, match=match):
        GridWorld(np.zeros((2, 3)), start)


def test_numpy_int_start_is_accepted():
    env = GridWorld(np.zeros((2, 3)), (np.int64(1), np.int32(2)))
    assert env.start == (1, 2) and env.start_state == 5


def test_bad_cell_queries():
    env = GridWorld(np.zeros((2, 3)), (0, 0))
    with pytest.raises(ValueError, match="state"):
        env.cell_of(6)
    with pytest.raises(TypeError, match="state"):
        env.cell_of(1.0)
    with pytest.raises(ValueError, match="outside"):
        env.state_of(2, 0)


def test_tabular_mdp_direct_construction():
    # a 3-state chain: action 0 moves right (clipped), action 1 stays
    next_state = [[1, 0], [2, 1], [2, 2]]
    reward = [[0.0, -1.0], [1.0, -1.0], [5.0, 5.0]]
    mdp = TabularMDP(next_state, reward, 1)
    assert mdp.n_states == 3 and mdp.n_actions == 2 and mdp.start_state == 1
    np.testing.assert_array_equal(mdp.next_state, next_state)
    np.testing.assert_array_equal(mdp.reward, reward)
    assert mdp.next_state.dtype == np.int32


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (([[1, 0]], [[0.0, 0.0]], 0), ValueError, "next_state"),  # 1 out of range
        (([[0, -1]], [[0.0, 0.0]], 0), ValueError, "next_state"),
        (([0, 0], [0.0, 0.0], 0), ValueError, "next_state"),
        (([[0.0, 0.0]], [[0.0, 0.0]], 0), TypeError, "next_state"),
        (([[0, 0]], [[0.0]], 0), ValueError, "reward"),
        (([[0, 0]], [[0.0, np.nan]], 0), ValueError, "reward"),
        (([[0, 0]], [[0.0, 0.0]], 1), ValueError, "start_state"),
        (([[0, 0]], [[0.0, 0.0]], 0.0), TypeError, "start_state"),
        (([[0, 0]], [[0.0, 0.0]], True), TypeError, "start_state"),
    ],
)
def test_bad_tabular_mdp(args, error, match):
    with pytest.raises(error, match=match):
        TabularMDP(*args)


def test_mdps_are_pytrees_that_jit_and_vmap_take():
    grid = GridWorld([[0.0, 1.0], [-1.0, 2.0]], (1, 0))
    leaves, treedef = jax.tree.flatten(grid)
    # one layout over outcomes (K = 1), a one-hot start, then the grid's cell rewards
    assert [leaf.shape for leaf in leaves] == [(4, 5, 1)] * 3 + [(4,), (2, 2)]
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, GridWorld) and again.start == (1, 0)
    ends = jax.jit(lambda mdp: rollout(mdp, jnp.array([3, 0]))[0][-1])
    assert int(ends(grid)) == 1
    mdp = TabularMDP(grid.next_state, grid.reward, 2)
    dynamics = jax.tree.leaves(mdp)[:3]
    starts = jax.vmap(
        lambda s: rollout(
            jax.tree.unflatten(jax.tree.structure(mdp), [*dynamics, jax.nn.one_hot(s, 4)]),
            jnp.array([4]),
        )[0][0]
    )
    np.testing.assert_array_equal(starts(jnp.arange(4)), np.arange(4))
    # a new start state reuses the compiled code (same leaves' shapes, same static data)
    assert jax.tree.structure(TabularMDP(grid.next_state, grid.reward, 3)) == jax.tree.structure(
        mdp
    )


# ----------------------------------------------------------------------------- the world protocol


def _worlds():
    grid = GridWorld([[0.0, 1.0, -1.0], [2.0, 0.5, 3.0]], (1, 0))
    uniform = np.full(grid.n_states, 1.0 / grid.n_states)
    slippery = GridWorld(grid.rewards, (1, 0), slip=0.2, terminal=[(0, 2)])
    return {
        "deterministic": (grid, ()),
        "terminal": (GridWorld(grid.rewards, (1, 0), terminal=[(0, 2)]), ()),
        "slippery": (slippery, ("outcomes",)),
        "random start": (
            TabularMDP.from_probabilities(grid.transition, grid.reward, uniform),
            ("start",),
        ),
        "both": (
            TabularMDP.from_outcomes(
                slippery.outcome_states, slippery.outcome_probs, slippery.outcome_rewards, uniform
            ),
            ("start", "outcomes"),
        ),
    }


@pytest.mark.parametrize("kind", list(_worlds()))
def test_every_tabular_world_is_one_layout_over_outcomes(kind):
    """Before issue 16 there was no World protocol and a deterministic MDP was a second
    storage kind (leaves next_state, reward, start_state)."""
    from pgm_rl.worlds import World, latent_sites

    world, latents = _worlds()[kind]
    assert isinstance(world, World)
    n_states, n_actions, n_outcomes = world.n_states, world.n_actions, world.n_outcomes
    states, probs, rewards, start = jax.tree.leaves(world)[:4]
    assert states is world.outcome_states and start is world.start_probs
    assert states.shape == probs.shape == rewards.shape == (n_states, n_actions, n_outcomes)
    assert states.dtype == np.int32 and start.shape == (n_states,)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(start.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(world.expected_reward, (probs * rewards).sum(axis=-1), atol=1e-12)
    assert latent_sites(world) == latents
    assert world.has_random_dynamics == (n_outcomes > 1) == ("outcomes" in latents)
    assert world.has_random_start == (np.count_nonzero(start) > 1) == ("start" in latents)
    assert world.is_deterministic == (not latents)
    if "outcomes" in latents:
        with pytest.raises(AttributeError, match="stochastic dynamics, so it has no next_state"):
            world.next_state  # noqa: B018
    else:
        np.testing.assert_array_equal(probs, 1.0)
        np.testing.assert_array_equal(world.next_state, states[..., 0])
        np.testing.assert_array_equal(world.reward, rewards[..., 0])
    if "start" in latents:
        with pytest.raises(AttributeError, match="random start"):
            world.start_state  # noqa: B018
    else:
        np.testing.assert_array_equal(start, np.eye(n_states)[world.start_state])
    # the conveniences are traceable too
    if not latents:
        ends = jax.jit(lambda w: (w.next_state[w.start_state, 4], w.reward[w.start_state, 4]))
        assert int(ends(world)[0]) == world.start_state
        assert float(ends(world)[1]) == world.reward[world.start_state, 4]


def test_worlds_and_dynamics_import_nothing_of_the_model_numpyro_or_arviz():
    code = (
        "import sys, pgm_rl.worlds, pgm_rl.dynamics, pgm_rl.envs, pgm_rl.gym\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpyro', 'arviz')"
        " or m == 'pgm_rl.model'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
