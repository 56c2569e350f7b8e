"""Pictures of trajectory posteriors: where the agent goes, which paths it takes, how far from exact.

What each function takes:

- a DataTree from :func:`pgm_rl.diagnostics.to_datatree`: :func:`plot_occupancy`,
  :func:`plot_trajectories` (these two need a GridWorld's tree), :func:`plot_rank`,
  :func:`plot_trace` and :func:`write_plots`, which writes the standard set
  (:data:`PLOT_FILES`) into a folder; a continuous-control DataTree from
  :func:`pgm_rl.diagnostics.control_datatree`: :func:`plot_action_band` (the sampled action
  band over time, beside an exact ``GaussianPosterior``'s);
- comparisons from :func:`pgm_rl.diagnostics.compare_to_exact`: :func:`plot_tv`;
- an environment whose states are the cells of a grid and exact or variational results:
  :func:`plot_env_occupancy` (an ``ExactPosterior`` and a ``SoftBellmanPolicy``),
  :func:`plot_policy_occupancy` (``PolicyEvaluation`` s), :func:`plot_policy` (a (T, S, A)
  log policy) and :func:`plot_reward_posterior` (per-cell posterior mean and sd of inverse RL);
- an array: :func:`plot_elbo_trace` (an ELBO per optimisation step);
- an :class:`~pgm_rl.control.Episode` of :func:`pgm_rl.control.mpc`: :func:`plot_episode`
  (states and actions over the steps);
- the product MDP of a reward machine (:func:`pgm_rl.envs.with_reward_machine`), its exact
  posterior and draws: :func:`plot_satisfaction` (the probability of having done the task by each
  step).

Each returns the matplotlib ``Figure`` (an ArviZ ``PlotCollection`` for :func:`plot_rank` and
:func:`plot_trace`) and, given ``save``, writes it as PNG or SVG (chosen by the file
extension). :func:`episode_visits` is the per-cell number the occupancy pictures draw.

Modules: :mod:`~pgm_rl.plots.runs` (a run's DataTree: :func:`plot_occupancy`,
:func:`plot_trajectories`, :func:`plot_rank`, :func:`plot_trace`, :func:`plot_tv`,
:func:`write_plots`), :mod:`~pgm_rl.plots.maps` (:func:`plot_env_occupancy`,
:func:`plot_policy_occupancy`, :func:`episode_visits`), :mod:`~pgm_rl.plots.policies`
(:func:`plot_policy`), :mod:`~pgm_rl.plots.irl` (:func:`plot_reward_posterior`),
:mod:`~pgm_rl.plots.machines` (:func:`plot_satisfaction`),
:mod:`~pgm_rl.plots.variational` (:func:`plot_elbo_trace`) and :mod:`~pgm_rl.plots.style`
(the resolution, colour maps and saving they share).
"""

from pgm_rl.plots.control import plot_action_band, plot_episode
from pgm_rl.plots.irl import plot_reward_posterior
from pgm_rl.plots.machines import plot_satisfaction
from pgm_rl.plots.maps import episode_visits, plot_env_occupancy, plot_policy_occupancy
from pgm_rl.plots.policies import plot_policy
from pgm_rl.plots.runs import (
    PLOT_FILES,
    plot_occupancy,
    plot_rank,
    plot_trace,
    plot_trajectories,
    plot_tv,
    write_plots,
)
from pgm_rl.plots.style import DPI, FIGSIZE_ARVIZ, SAVE_FORMATS
from pgm_rl.plots.variational import plot_elbo_trace

__all__ = [
    "DPI",
    "FIGSIZE_ARVIZ",
    "PLOT_FILES",
    "SAVE_FORMATS",
    "episode_visits",
    "plot_action_band",
    "plot_elbo_trace",
    "plot_env_occupancy",
    "plot_episode",
    "plot_occupancy",
    "plot_policy",
    "plot_policy_occupancy",
    "plot_rank",
    "plot_reward_posterior",
    "plot_satisfaction",
    "plot_trace",
    "plot_trajectories",
    "plot_tv",
    "write_plots",
]
