"""The office world of the reward machines reference code, and its four tasks.

The map of Icarte et al.'s ``OfficeWorld`` (github.com/RToroIcarte/reward_machines,
``reward_machines/envs/grids/office_world.py``): 9 rows x 12 columns in 3x3 rooms joined by
doors, 4 actions (0 up, 1 down, 2 left, 3 right; no "stay"), a move into a wall keeps the agent
in place. The reference writes cells as ``(x, y)`` with ``y`` growing upwards; here state
``row * 12 + col`` with ``row = 8 - y`` and ``col = x`` (row 0 at the top, as on a grid). The
agent starts at ``(x, y) = (2, 1)``: state ``7 * 12 + 2 = 86``.

Labels (:func:`office_labels`): ``a``, ``b``, ``c``, ``d`` the four corner rooms' marks, ``e``
the mail, ``f`` coffee (two machines), ``g`` the office, ``n`` a decoration (six plants; the
tasks fail on entering one).

Tasks (:data:`OFFICE_TASKS`, :func:`office_tasks`), the reference's
``envs/grids/reward_machines/office/t1.txt .. t4.txt``: ``t1`` deliver coffee to the office,
``t2`` deliver mail to the office, ``t3`` patrol a, b, c, d in order, ``t4`` deliver coffee and
mail (either order) to the office, each without touching a decoration; reward 1 on completion.
(``t2`` was not in the indexed copy of the reference; its text here is the same task written
like ``t1``, as a fork of the reference ships it without its extra plant penalty.)

To make the most probable path the shortest one, every step of a task's machine costs
``step_reward`` (-1) until the task is done (:func:`office_tasks`; the world's own reward is 0):
with ``with_reward_machine(office_world(), machine, office_labels())`` the return of a path
that finishes is ``1 - steps``, so for a horizon long enough the MAP path finishes the task in
the fewest steps; the reference's value iteration (discount 0.9, the machine's reward alone)
finds those same fewest steps. The cost is the machine's, not the world's, because the world
goes on after the task is done (:mod:`pgm_rl.worlds.reward_machine`).
"""

import math
import numbers

import numpy as np

from pgm_rl.worlds.machine_text import load_reward_machine
from pgm_rl.worlds.reward_machine import RewardMachine
from pgm_rl.worlds.tabular import TabularMDP

__all__ = [
    "OFFICE_ACTIONS",
    "OFFICE_SHAPE",
    "OFFICE_START",
    "OFFICE_TASKS",
    "office_labels",
    "office_tasks",
    "office_world",
]

OFFICE_SHAPE = (9, 12)
OFFICE_ACTIONS = ("up", "down", "left", "right")
OFFICE_START = (7, 2)  # (row, col) of the reference's (x, y) = (2, 1)

# The reference's objects, (x, y) -> proposition.
_OBJECTS = {
    (1, 1): "a",
    (1, 7): "b",
    (10, 7): "c",
    (10, 1): "d",
    (7, 4): "e",
    (8, 2): "f",
    (3, 6): "f",
    (4, 4): "g",
    (4, 1): "n",
    (7, 1): "n",
    (4, 7): "n",
    (7, 7): "n",
    (1, 4): "n",
    (10, 4): "n",
}

OFFICE_TASKS = {
    "t1": """0 # initial state
[2] # terminal state
(0,0,'!f&!n',ConstantRewardFunction(0))
(0,1,'f&!n',ConstantRewardFunction(0))
(1,1,'!g&!n',ConstantRewardFunction(0))
(1,2,'g&!n',ConstantRewardFunction(1))
""",
    "t2": """0 # initial state
[2] # terminal state
(0,0,'!e&!n',ConstantRewardFunction(0))
(0,1,'e&!n',ConstantRewardFunction(0))
(1,1,'!g&!n',ConstantRewardFunction(0))
(1,2,'g&!n',ConstantRewardFunction(1))
""",
    "t3": """0 # initial state
[4] # terminal state
(0,0,'!a&!n',ConstantRewardFunction(0))
(0,1,'a&!n',ConstantRewardFunction(0))
(1,1,'!b&!n',ConstantRewardFunction(0))
(1,2,'b&!n',ConstantRewardFunction(0))
(2,2,'!c&!n',ConstantRewardFunction(0))
(2,3,'c&!n',ConstantRewardFunction(0))
(3,3,'!d&!n',ConstantRewardFunction(0))
(3,4,'d&!n',ConstantRewardFunction(1))
""",
    "t4": """0 # initial state
[1] # terminal state
(0,0,'!e&!f&!n',ConstantRewardFunction(0))
(0,2,'e&!n',ConstantRewardFunction(0))
(0,3,'!e&f&!n',ConstantRewardFunction(0))
(2,2,'!f&!n',ConstantRewardFunction(0))
(2,4,'f&!n',ConstantRewardFunction(0))
(3,3,'!e&!n',ConstantRewardFunction(0))
(3,4,'e&!n',ConstantRewardFunction(0))
(4,1,'g&!n',ConstantRewardFunction(1))
(4,4,'!g&!n',ConstantRewardFunction(0))
""",
}
"""The reference's office tasks in its text format (name -> text)."""


def _walls():
    """The reference's forbidden (x, y, action) moves; actions 0 up, 1 down, 2 left, 3 right."""
    up, down, left, right = range(4)
    forbidden = set()
    for x in range(12):
        for y in (0, 3, 6):
            forbidden |= {(x, y, down), (x, y + 2, up)}
    for y in range(9):
        for x in (0, 3, 6, 9):
            forbidden |= {(x, y, left), (x + 2, y, right)}
    for y in (1, 7):
        for x in (2, 5, 8):
            forbidden -= {(x, y, right), (x + 1, y, left)}
    for x in (1, 4, 7, 10):
        forbidden -= {(x, 5, up), (x, 6, down)}
    for x in (1, 10):
        forbidden -= {(x, 2, up), (x, 3, down)}
    return forbidden


def office_world():
    """The office map as a deterministic :class:`~pgm_rl.worlds.tabular.TabularMDP`.

    Returns
    -------
    TabularMDP
        108 states (``row * 12 + col``), 4 actions (up, down, left, right), start state 86,
        reward 0 everywhere (the tasks' machines pay, :func:`office_tasks`).
    """
    height, width = OFFICE_SHAPE
    forbidden = _walls()
    moves = {0: (0, 1), 1: (0, -1), 2: (-1, 0), 3: (1, 0)}  # action -> (dx, dy)
    next_state = np.empty((height * width, 4), np.int64)
    for state in range(height * width):  # once, at construction
        row, col = divmod(state, width)
        x, y = col, height - 1 - row
        for action, (dx, dy) in moves.items():
            if (x, y, action) not in forbidden:
                x2, y2 = x + dx, y + dy
            else:
                x2, y2 = x, y
            next_state[state, action] = (height - 1 - y2) * width + x2
    reward = np.zeros(next_state.shape)
    return TabularMDP(next_state, reward, OFFICE_START[0] * width + OFFICE_START[1])


def office_labels():
    """The event of each office state (``""`` for none), a tuple of 108 str."""
    height, width = OFFICE_SHAPE
    labels = [""] * (height * width)
    for (x, y), proposition in _OBJECTS.items():
        labels[(height - 1 - y) * width + x] = proposition
    return tuple(labels)


def office_tasks(step_reward=-1.0):
    """The office tasks as reward machines, ``{"t1": RewardMachine, ..., "t4": ...}``.

    Read with :func:`~pgm_rl.worlds.machine_text.load_reward_machine` from
    :data:`OFFICE_TASKS` over the office's events (a..g, n), so each machine has a sink state
    (the last) that entering a decoration leads to. Every step from a machine state that is not
    terminal (the sink included) also pays ``step_reward`` (a finite real; 0 gives the
    reference's machines as they are), whatever the event ("" included).
    """
    if isinstance(step_reward, (bool, np.bool_)) or not isinstance(step_reward, numbers.Real):
        raise TypeError(f"step_reward must be a real number, got {step_reward!r}")
    if not math.isfinite(step_reward):
        raise ValueError(f"step_reward must be finite, got {step_reward!r}")
    events = sorted(set(office_labels()))  # "" first
    tasks = {}
    for name, text in OFFICE_TASKS.items():
        machine = load_reward_machine(text, events=events[1:])
        transitions = {
            (u, event): machine.transitions.get((u, event), (u, 0.0))
            for u in range(machine.n_states)
            if u not in machine.terminal
            for event in events
        }
        transitions = {
            key: (u_next, reward + float(step_reward))
            for key, (u_next, reward) in transitions.items()
        }
        tasks[name] = RewardMachine(transitions, machine.initial, machine.terminal)
    return tasks
