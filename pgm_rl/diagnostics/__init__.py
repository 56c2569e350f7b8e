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
``exact`` (when an :class:`~pgm_rl.ExactPosterior` is given)
    ``state_marginals`` (step = 0..T, state), ``action_marginals`` (time, action), ``log_z``,
    ``expected_return``.

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
:mod:`~pgm_rl.diagnostics.vs_exact` (:func:`compare_to_exact`) and
:mod:`~pgm_rl.diagnostics.problems` (:func:`problems`: R-hat, stuck and copied chains and the
comparison to exact, in words). ArviZ is imported by this package and :mod:`pgm_rl.plots`
only: ``import pgm_rl.exact`` does not load it.
"""

from pgm_rl.diagnostics import _numpyro  # noqa: F401  (first: the NumPyro/ArviZ import order)
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
from pgm_rl.diagnostics.schema import check_run
from pgm_rl.diagnostics.vs_exact import (
    MIN_REFERENCE_DRAWS,
    MIN_VISITS,
    REFERENCE_REPLICATES,
    REFERENCE_Z,
    compare_to_exact,
)

__all__ = [
    "DIMS",
    "END_MASS",
    "MAX_END_ROWS",
    "MIN_REFERENCE_DRAWS",
    "MIN_VISITS",
    "REFERENCE_REPLICATES",
    "REFERENCE_Z",
    "R_HAT_THRESHOLD",
    "SUMMARY_COLUMNS",
    "SummaryTable",
    "best_state",
    "check_run",
    "compare_to_exact",
    "empirical_state_marginals",
    "env_from_datatree",
    "occupancy_r_hat",
    "problems",
    "summary",
    "to_datatree",
    "trajectory_states",
    "tv_distance",
    "weighted_state_marginals",
]
