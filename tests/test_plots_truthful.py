"""The pictures say what is true (issue 17): the IRL caption, the policy map and colours, the
rank plot's limits."""

import matplotlib

matplotlib.use("Agg")

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import colors

import pgm_rl
from pgm_rl import irl, plots
from pgm_rl.diagnostics import (
    empirical_state_marginals,
    to_datatree,
    trajectory_states,
    tv_distance,
)
from pgm_rl.envs import GridWorld


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_reward_posterior_caption_says_what_hatching_means():
    """Being avoided is evidence: the likelihood pulls a reachable, never-entered cell's reward
    down (so its posterior is not the prior); only an unreachable cell's reward is untouched.
    The caption says so and no longer claims the prior."""
    env = GridWorld(np.zeros((3, 4)), (0, 0))
    horizon = 3
    actions = np.full((20, horizon), 3)  # every demonstration: right, right, right
    states, _ = pgm_rl.rollout(env, actions)
    demos = {"actions": actions, "states": np.asarray(states)}
    visits = np.bincount(demos["states"][:, 1:].ravel(), minlength=12)
    grad = np.asarray(jax.grad(irl.log_likelihood)(np.zeros(12), env, np.eye(12), demos, 1.0))
    near, far = env.state_of(1, 0), env.state_of(2, 3)  # 1 move / 5 moves from the start
    assert visits[near] == 0 and visits[far] == 0
    assert grad[near] < -1.0  # reachable, never entered: pulled below the prior
    assert grad[far] == 0.0  # out of reach in 3 steps: the prior's
    fig = plots.plot_reward_posterior(env, np.zeros(12), np.ones(12), visits=visits)
    title = fig._suptitle.get_text()
    assert "hatched" in title and "its posterior is the prior" not in title
    assert "below the prior" in title and "out of reach" in title


def _policy(env, horizon, favourite):
    probs = np.full((horizon, env.n_states, env.n_actions), 0.01)
    probs[..., favourite] = 1.0 - 0.01 * (env.n_actions - 1)
    return np.log(probs)


def _letters(ax):
    return {text.get_text() for text in ax.texts}


def test_plot_policy_marks_the_lake_and_has_no_stay_ring():
    pytest.importorskip("gymnasium")
    from pgm_rl.gym import from_gymnasium

    env = from_gymnasium("FrozenLake-v1", is_slippery=True)
    assert "stay" not in env.action_names
    ax = plots.plot_policy(env, _policy(env, 3, 1)).axes[0]
    assert "stay" not in ax.get_title()
    assert {"S", "H", "G"} <= _letters(ax)
    holes = sum(line.count("H") for line in env.desc)
    hatched = [patch for patch in ax.patches if patch.get_hatch()]
    assert len(hatched) == holes == 4


def test_plot_policy_grid_world_start_goal_and_stay():
    env = GridWorld(np.array([[0.0, -1.0], [-1.0, 5.0]]), (0, 0))
    ax = plots.plot_policy(env, _policy(env, 2, 4)).axes[0]
    assert "ring: stay" in ax.get_title()
    assert {"S", "G"} <= _letters(ax)


def test_plot_policy_reward_colours_span_orders_of_magnitude():
    """The notebook grid (-1, -10, -100 beside +10000): a symmetric log scale, so a -1 cell is
    visibly apart from a 0 and from a -100 cell (a linear scale puts them 5e-5 apart)."""
    env = GridWorld.notebook()
    image = plots.plot_policy(env, _policy(env, 2, 0)).axes[0].images[0]
    assert isinstance(image.norm, colors.SymLogNorm)
    assert 0.5 - image.norm(-1.0) > 0.05
    assert image.norm(-1.0) - image.norm(-100.0) > 0.1
    # rewards of one order of magnitude keep a linear scale
    small = GridWorld(np.array([[0.5, -2.0], [1.0, 2.0]]), (0, 0))
    image = plots.plot_policy(small, _policy(small, 2, 0)).axes[0].images[0]
    assert type(image.norm) is colors.Normalize


def test_rank_plot_says_it_cannot_see_a_wrong_posterior():
    """Draws from the prior, as chains stuck far from the posterior would be: the chains agree
    with each other, so the rank test passes while the TV to exact is large; the picture says
    that it checks agreement between chains, not correctness."""
    env = GridWorld(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]]), (0, 0))
    horizon, beta = 4, 2.0
    exact = pgm_rl.solve(env, horizon, beta)
    actions = np.random.default_rng(0).integers(0, env.n_actions, (4, 500, horizon))
    tree = to_datatree({"actions": actions}, env, exact)
    states = trajectory_states(tree).values.reshape(-1, horizon + 1)
    marginals = empirical_state_marginals(states, env.n_states)
    assert float(np.mean(tv_distance(marginals, exact.state_marginals))) > 0.3
    collection = plots.plot_rank(tree)
    texts = [t.get_text() for ax in collection.get_viz("figure").axes for t in ax.texts]
    (p_text,) = [t for t in texts if t.startswith("p=")]
    assert float(p_text[2:].split("(")[0]) > 0.01  # a clean picture on a wrong run
    title = collection.get_viz("figure").axes[0].get_title()
    assert "agree with each other" in title and "compare_to_exact" in title
