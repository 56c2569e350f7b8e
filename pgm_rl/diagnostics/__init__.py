"""From samples to an ArviZ DataTree, its convergence summary and its distance to the exact answer.

The DataTree layout (``T`` = horizon, ``S`` = states, ``A`` = actions):

``posterior``
    ``actions`` (chain, draw, time), ``states`` (chain, draw, step), ``rewards`` (chain, draw,
    time) and ``return`` (chain, draw) = sum of the rewards; coords ``time`` = 0..T-1 and
    ``step`` = 1..T: the states *entered*. The start state (step 0) is not a posterior
    quantity (it is the same in every draw) and lives in the root attribute ``start_state``;
    :func:`trajectory_states` gives the whole path (chain, draw, step = 0..T). Keeping the
    constant step out of ``posterior`` lets ArviZ's own functions run on the tree as an ArviZ
    user calls them (``arviz_plots.plot_rank(dt)`` fails on a constant integer variable).
``sample_stats``
    ``acceptance_rate`` (and ``diverging``) where the kernel reports them.
``constant_data``
    the tabular MDP: ``next_state`` and ``reward`` (state, action) when every step has one
    outcome (K = 1), else ``outcome_states``, ``outcome_probs``, ``outcome_rewards`` (state,
    action, outcome) and the expected ``reward`` (state, action); ``grid`` (row, col), the cell
    rewards, for a :class:`~pgm_rl.GridWorld` (with ``slip`` and ``terminal`` root attributes
    when it has them).
``exact`` (the model's exact posterior: by default for an MCMC run of
:func:`~pgm_rl.trajectory_model`, or when an :class:`~pgm_rl.ExactPosterior` is given)
    ``state_marginals`` (step = 0..T, state), ``action_marginals`` (time, action), ``log_z``,
    ``expected_return``.
``reference`` (by default for an MCMC run of a model that adds terms to the trajectory model:
its importance-sampling :func:`reference`)
    ``state_marginals`` and ``state_marginals_se`` (step = 0..T, state), ``log_z``,
    ``log_z_se``, ``ess``, ``num_samples``, ``expected_return``, ``expected_return_se``,
    ``return_sd``, ``markov_log_z``; attrs ``kind`` and ``sites``.

Root attributes: ``horizon``, ``beta``, ``start_state``, ``best_state`` (the state entered with
the largest reward: the goal), ``sampler`` and, for a grid, ``start_row``/``start_col``.
The environment can be rebuilt from the tree with :func:`env_from_datatree`; :func:`check_run`
checks a tree (e.g. one read back by :func:`pgm_rl.io.load`) against this layout and its own data.

A caveat for ArviZ's own rank plots: ``arviz_plots.plot_rank`` ranks tied values by position,
so for the discrete sites (and a return with ties) it shows a failing rank test even for exact
iid draws. :func:`pgm_rl.plots.plot_rank` breaks ties at random instead.

Modules: :mod:`~pgm_rl.diagnostics.datatree` (:func:`to_datatree`, :func:`env_from_datatree`,
:func:`trajectory_states`, :func:`best_state`), :mod:`~pgm_rl.diagnostics.schema`
(:func:`check_run`), :mod:`~pgm_rl.diagnostics.marginals` (:func:`empirical_state_marginals`,
:func:`weighted_state_marginals`, :func:`tv_distance`), :mod:`~pgm_rl.diagnostics.convergence`
(:func:`summary`, :class:`SummaryTable`, :func:`occupancy_r_hat`),
:mod:`~pgm_rl.diagnostics.reference` (:func:`reference`, :class:`Reference`: the exact
posterior, or importance sampling for a model with extra terms),
:mod:`~pgm_rl.diagnostics.vs_exact` (:func:`compare_to_exact`),
:mod:`~pgm_rl.diagnostics.vs_reference` (:func:`compare_to_reference`) and
:mod:`~pgm_rl.diagnostics.problems` (:func:`problems`: R-hat, stuck and copied chains and the
comparison to the tree's reference, in words). ArviZ is imported by this package and :mod:`pgm_rl.plots`
only: ``import pgm_rl.exact`` does not load it.
"""

from pgm_rl.diagnostics import _numpyro  # noqa: F401  (first: the NumPyro/ArviZ import order)
from pgm_rl.diagnostics.continuous import (
    CONTROL_DIMS,
    GaussianComparison,
    compare_to_gaussian,
    control_datatree,
)
from pgm_rl.diagnostics.convergence import (
    END_MASS,
    MAX_END_ROWS,
    R_HAT_THRESHOLD,
    SUMMARY_COLUMNS,
    SummaryTable,
    occupancy_r_hat,
    summary,
)
from pgm_rl.diagnostics.datatree import (
    DIMS,
    best_state,
    env_from_datatree,
    to_datatree,
    trajectory_states,
)
from pgm_rl.diagnostics.marginals import (
    empirical_state_marginals,
    tv_distance,
    weighted_state_marginals,
)
from pgm_rl.diagnostics.problems import problems
from pgm_rl.diagnostics.reference import DEFAULT_REFERENCE_SAMPLES, Reference, reference
from pgm_rl.diagnostics.schema import check_run
from pgm_rl.diagnostics.vs_exact import (
    MIN_REFERENCE_DRAWS,
    MIN_VISITS,
    REFERENCE_REPLICATES,
    REFERENCE_Z,
    compare_to_exact,
)
from pgm_rl.diagnostics.vs_reference import MIN_REFERENCE_ESS, compare_to_reference

__all__ = [
    "CONTROL_DIMS",
    "DEFAULT_REFERENCE_SAMPLES",
    "DIMS",
    "END_MASS",
    "MAX_END_ROWS",
    "MIN_REFERENCE_DRAWS",
    "MIN_REFERENCE_ESS",
    "MIN_VISITS",
    "REFERENCE_REPLICATES",
    "REFERENCE_Z",
    "R_HAT_THRESHOLD",
    "SUMMARY_COLUMNS",
    "GaussianComparison",
    "Reference",
    "SummaryTable",
    "best_state",
    "check_run",
    "compare_to_exact",
    "compare_to_gaussian",
    "compare_to_reference",
    "control_datatree",
    "empirical_state_marginals",
    "env_from_datatree",
    "occupancy_r_hat",
    "problems",
    "reference",
    "summary",
    "to_datatree",
    "trajectory_states",
    "tv_distance",
    "weighted_state_marginals",
]
