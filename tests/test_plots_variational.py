"""plots.plot_elbo_trace and plots.plot_policy: figures, saved files, bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pgm_rl import plots
from pgm_rl.envs import GridWorld


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_plot_elbo_trace_with_references(tmp_path):
    trace = -500.0 + 497.0 * (1 - np.exp(-np.arange(50) / 3.0))
    path = tmp_path / "elbo.png"
    fig = plots.plot_elbo_trace(trace, log_z=-3.0, elbo_star=-3.5, save=str(path))
    assert path.stat().st_size > 0
    assert len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any(label.startswith("log Z") for label in labels)
    assert any(label.startswith("ELBO*") for label in labels)
    low, high = fig.axes[0].get_ylim()
    assert low <= trace.min() and high >= -3.0  # the whole trace and log Z in view
    assert fig.axes[0].get_yscale() == "symlog"


def test_plot_elbo_trace_alone_and_one_step():
    assert len(plots.plot_elbo_trace(np.array([-2.0, -1.0])).axes) == 1
    assert len(plots.plot_elbo_trace(np.array([-2.0]), log_z=-1.0).axes) == 2


@pytest.mark.parametrize(
    "trace, kwargs", [(np.zeros((2, 2)), {}), (np.array([]), {}), (np.zeros(3), {"log_z": np.nan})]
)
def test_plot_elbo_trace_bad_input(trace, kwargs):
    with pytest.raises(ValueError):
        plots.plot_elbo_trace(trace, **kwargs)


def test_plot_elbo_trace_bad_save_path(tmp_path):
    with pytest.raises(ValueError, match=r"png or \.svg"):
        plots.plot_elbo_trace(np.zeros(3), save=str(tmp_path / "x.txt"))


def _policy(env, horizon, favourite):
    probs = np.full((horizon, env.n_states, env.n_actions), 0.01)
    probs[..., favourite] = 1.0 - 0.01 * (env.n_actions - 1)
    return np.log(probs)


def test_plot_policy_draws_arrows_and_stay_rings(tmp_path):
    env = GridWorld(np.array([[0.0, 0.0], [0.0, 1.0]]), (0, 0))
    path = tmp_path / "policy.png"
    log_pi = _policy(env, 2, 3)  # 'right'
    fig = plots.plot_policy(env, log_pi, time=1, save=str(path))
    assert path.stat().st_size > 0
    ax = fig.axes[0]
    arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrow"]
    assert len(arrows) == env.n_states  # one arrow per cell; the 0.01 moves are not drawn
    stay = plots.plot_policy(env, _policy(env, 2, 4))  # 'stay'
    rings = [p for p in stay.axes[0].patches if type(p).__name__ == "Circle"]
    assert len(rings) == env.n_states
    assert "t = 1" in ax.get_title()


def test_plot_policy_on_frozen_lake():
    pytest.importorskip("gymnasium")
    from pgm_rl.gym import from_gymnasium

    env = from_gymnasium("FrozenLake-v1", is_slippery=True)
    ax = plots.plot_policy(env, _policy(env, 3, 1), time=0).axes[0]
    arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrow"]
    assert len(arrows) == env.n_states  # FrozenLake's action 1 is "down": one arrow per cell
    assert sorted(text.get_text() for text in ax.texts) == ["G", "H", "H", "H", "H", "S"]
    assert "t = 0" in ax.get_title()


def test_plot_policy_bad_input():
    env = GridWorld(np.zeros((2, 2)), (0, 0))
    log_pi = _policy(env, 2, 0)
    with pytest.raises(ValueError, match="shape"):
        plots.plot_policy(env, log_pi[:, :3])
    with pytest.raises(ValueError, match="time"):
        plots.plot_policy(env, log_pi, time=2)
    with pytest.raises(TypeError, match="time"):
        plots.plot_policy(env, log_pi, time=0.5)
