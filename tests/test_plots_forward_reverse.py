"""plots.plot_policy_occupancy: executed policies beside the exact posterior, one colour scale."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import pgm_rl
from pgm_rl import plots
from pgm_rl.envs import GridWorld


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def problem():
    env = GridWorld(np.arange(6.0).reshape(2, 3), (1, 0))
    return env, pgm_rl.solve(env, 4, 1.0)


def test_plot_policy_occupancy_panels_and_scale(tmp_path):
    env, post = problem()
    uniform = np.full((4, env.n_states, env.n_actions), 1.0 / env.n_actions)
    runs = [
        ("posterior's policy", pgm_rl.evaluate_policy(env, post.policy, 1.0), "KL = 0"),
        ("uniform", pgm_rl.evaluate_policy(env, uniform, 1.0), "prior"),
    ]
    path = tmp_path / "occupancy.png"
    fig = plots.plot_policy_occupancy(env, post, runs, save=path, title="t", exact_subtitle="x")
    assert path.stat().st_size > 0
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert len({(im.norm.vmin, im.norm.vmax) for im in images}) == 1  # one colour scale
    # the posterior's own policy executed has the posterior's occupancy (deterministic MDP)
    np.testing.assert_allclose(images[1].get_array(), images[0].get_array(), atol=1e-12)
    np.testing.assert_allclose(images[0].get_array().sum(), 5.0)  # T + 1 steps
    assert fig.axes[0].get_title() == "exact posterior"


def test_plot_policy_occupancy_bad_input():
    env, post = problem()
    with pytest.raises(TypeError, match="exact"):
        plots.plot_policy_occupancy(env, post.policy, [])
    with pytest.raises(TypeError, match="PolicyEvaluation"):
        plots.plot_policy_occupancy(env, post, [("q", post, "")])
    with pytest.raises(TypeError, match="sequence of"):
        plots.plot_policy_occupancy(env, post, ["q"])
    other = pgm_rl.evaluate_policy(env, np.asarray(post.policy)[:2], 1.0)
    with pytest.raises(ValueError, match="horizon"):
        plots.plot_policy_occupancy(env, post, [("q", other, "")])
    with pytest.raises(ValueError, match="save"):
        plots.plot_policy_occupancy(env, post, [], save="x.jpg")
