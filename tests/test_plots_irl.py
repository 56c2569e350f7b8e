"""``plots.plot_reward_posterior``: the reward posterior on the grid."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pgm_rl.envs import GridWorld
from pgm_rl.plots import plot_reward_posterior


@pytest.fixture
def env():
    return GridWorld(np.arange(12.0).reshape(3, 4) - 5, (2, 0))


def test_panels_shared_scale_annotations_and_file(env, tmp_path):
    truth = np.asarray(env.rewards).ravel()
    mean = 0.8 * truth
    sd = np.linspace(0.1, 1.0, 12)
    visits = np.ones(12)
    visits[3] = 0
    path = tmp_path / "reward.png"
    fig = plot_reward_posterior(env, mean, sd, true_reward=truth, visits=visits, save=path)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3  # truth, mean, sd
    true_image, mean_image, sd_image = images
    assert true_image.norm.vmin == mean_image.norm.vmin == -6.0  # one shared colour scale
    assert true_image.norm.vmax == mean_image.norm.vmax == 6.0
    assert sd_image.norm.vmin == 0.0 and sd_image.norm.vmax == pytest.approx(1.0)
    assert len(fig.axes[0].texts) >= 12  # every cell annotated
    assert "correlation" in fig._suptitle.get_text() and "hatched" in fig._suptitle.get_text()
    assert path.stat().st_size > 10_000
    plt.close(fig)


def test_without_truth_two_panels_grid_shaped_input(env):
    fig = plot_reward_posterior(env, np.zeros((3, 4)), np.ones((3, 4)))
    assert sum(1 for ax in fig.axes if ax.images) == 2
    plt.close(fig)


def test_bad_input(env):
    with pytest.raises(ValueError, match="posterior_mean"):
        plot_reward_posterior(env, np.zeros(5), np.ones(12))
    with pytest.raises(ValueError, match=">= 0"):
        plot_reward_posterior(env, np.zeros(12), -np.ones(12))
    with pytest.raises(ValueError, match="grid shape"):
        plot_reward_posterior(object(), np.zeros(12), np.ones(12))
    with pytest.raises(ValueError, match="png"):
        plot_reward_posterior(env, np.zeros(12), np.ones(12), save="x.pdf")
