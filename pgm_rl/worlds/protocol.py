"""The world protocol: what every model, solver, kernel and SMC run may ask of an environment.

A world is a finite-horizon decision process given as a JAX pytree of arrays. A trajectory of
horizon T is fixed by three things, and every sampler works on these alone:

- its **start** ``s_0``, drawn from the start distribution ``start_probs`` (S,) (a one-hot
  vector for a single start state: then the start is fixed and its log prior is 0);
- its **actions** ``a_0 .. a_{T-1}`` (T,), each in ``0 .. A-1`` (the action prior is uniform);
- its **outcome indices** ``k_0 .. k_{T-1}`` (T,), each in ``0 .. K-1``: step t enters
  ``outcome_states[s_t, a_t, k_t]``, earns ``outcome_rewards[s_t, a_t, k_t]`` and has prior
  probability ``outcome_probs[s_t, a_t, k_t]`` (deterministic dynamics are K = 1 with
  probability 1: every index is 0 and its log prior 0).

The states and rewards are then a deterministic function of ``(start, actions, outcomes)``:
:mod:`pgm_rl.dynamics` is the one definition of that move (``rollout``, ``follow``,
``draw_start``, ``start_log_prob``, the values to go). Its log prior is ``log
start_probs[s_0] + sum_t log outcome_probs[s_t, a_t, k_t]`` and the optimality likelihood is
``beta * sum_t outcome_rewards[s_t, a_t, k_t]``. Because a deterministic world is the special
case K = 1 with a one-hot start, code written over outcomes needs no second path for it; the
kind (random dynamics, random start) only decides which latent variables exist
(:func:`pgm_rl.worlds.checks.latent_sites`), never how to move.

:class:`~pgm_rl.worlds.tabular.TabularMDP` (and :class:`~pgm_rl.worlds.grid.GridWorld`,
:class:`~pgm_rl.worlds.gymnasium.GymnasiumMDP`) implements :class:`World` with dense tables.
Later worlds implement the same four pieces (init, step over outcomes, reward, log prior of
outcomes) in their own way:

- **Continuous dynamics** (``s' = f(s, a) + noise``): the start distribution is a sampler and a
  log density instead of ``start_probs``, the outcome index is the noise draw, and "step over
  outcomes" is a JAX step function ``step(state, action, outcome) -> (next_state, reward,
  log_prior)`` in place of the gathers from ``outcome_states`` / ``outcome_rewards`` /
  ``outcome_probs``. Exact message passing over S does not apply (there is no finite S); the
  trajectory samplers and SMC, which only ever call the step, do.
- **A product MDP with a reward machine** (a tabular MDP times a finite automaton over its
  labels): the product state is ``(s, q)``, flattened to one index, so it *is* a tabular world
  with S = S_mdp * Q: ``outcome_states`` maps ``(s, q), a, k`` to ``(s', delta(q, label(s')))``,
  ``outcome_rewards`` are the machine's rewards and ``outcome_probs`` the MDP's; the start is
  ``start_probs`` over ``(s_0, q_0)``. Everything written over this protocol runs on it
  unchanged.

Shapes below: S states, A actions, K outcomes per state-action pair (the largest count of any
pair; shorter rows are padded with probability 0).
"""

from typing import Protocol, runtime_checkable

__all__ = ["World"]


@runtime_checkable
class World(Protocol):
    """What a world gives the model, the solvers, the kernels and SMC (see the module docs).

    Attributes
    ----------
    n_states : int
        S, the number of states.
    n_actions : int
        A, the number of actions (every action is allowed in every state).
    n_outcomes : int
        K, the largest number of outcomes of a state-action pair (1 for deterministic
        dynamics).
    start_probs : float array, shape (S,)
        The start distribution (init): ``start_probs[s]`` = P(s_0 = s), summing to 1; one-hot
        for a single start state.
    outcome_states : int32 array, shape (S, A, K)
        The step over outcomes: outcome ``k`` of taking action ``a`` in state ``s`` enters
        ``outcome_states[s, a, k]`` (padding repeats a real outcome's state).
    outcome_probs : float array, shape (S, A, K)
        The prior of the outcomes: ``outcome_probs[s, a, k]`` = P(k | s, a); each row sums to 1
        and 0 marks padding (log prior ``-inf``: never drawn, never accepted).
    outcome_rewards : float array, shape (S, A, K)
        The reward of each outcome (finite; 0 for padding).
    expected_reward : float array, shape (S, A)
        ``sum_k outcome_probs * outcome_rewards``, the expected reward of each pair.
    has_random_dynamics : bool
        True when K > 1 (the outcome indices are latent variables).
    has_random_start : bool
        True when ``start_probs`` has more than one nonzero entry (the start is latent). Static
        (known without looking at traced values).
    is_deterministic : bool
        ``not (has_random_dynamics or has_random_start)``.

    Notes
    -----
    The arrays are the world's pytree leaves (so ``jax.jit`` and ``jax.vmap`` take a world),
    the rest is static. Hot paths must not branch on the three flags: they move over outcomes
    (:mod:`pgm_rl.dynamics`), where K = 1 and a one-hot start cost nothing extra; the flags
    decide only which latent sites exist (:func:`pgm_rl.worlds.checks.latent_sites`) and what
    messages say (:func:`pgm_rl.worlds.checks.describe_randomness`).
    """

    @property
    def n_states(self) -> int: ...

    @property
    def n_actions(self) -> int: ...

    @property
    def n_outcomes(self) -> int: ...

    @property
    def start_probs(self): ...

    @property
    def outcome_states(self): ...

    @property
    def outcome_probs(self): ...

    @property
    def outcome_rewards(self): ...

    @property
    def expected_reward(self): ...

    @property
    def has_random_dynamics(self) -> bool: ...

    @property
    def has_random_start(self) -> bool: ...

    @property
    def is_deterministic(self) -> bool: ...
