"""Reward machines from the text format of the reward_machines reference code.

The format of Icarte et al.'s code (github.com/RToroIcarte/reward_machines,
``reward_machines/reward_machines/reward_machine.py``)::

    0        # initial state
    [2]      # terminal states
    (0,0,'!f&!n',ConstantRewardFunction(0))
    (0,1,'f&!n',ConstantRewardFunction(0))
    (1,1,'!g&!n',ConstantRewardFunction(0))
    (1,2,'g&!n',ConstantRewardFunction(1))

Each transition line is ``(u1, u2, formula, ConstantRewardFunction(r))``: from machine state
``u1``, when the true propositions satisfy ``formula`` (a formula in disjunctive normal form
over propositions: ``|`` or, ``&`` and, ``!`` not, ``True``, ``False``), move to ``u2`` and pay
``r``. :func:`load_reward_machine` reads it into a :class:`~pgm_rl.worlds.reward_machine.
RewardMachine` whose events are single propositions (each state of a world carries at most one
label): each formula is evaluated for each event and for ``""`` (nothing true). As in the
reference, lines out of a terminal state are ignored, and an event that no formula of ``u1``
accepts makes the machine "fall off" (reward 0; the reference ends the episode): here it moves
to an extra absorbing, non-terminal machine state (the *sink*, ``n_states - 1``), so it never
counts as satisfying the task.
"""

import ast
import os
import re

from pgm_rl.worlds.reward_machine import RewardMachine

__all__ = ["load_reward_machine", "parse_formula"]

_PROPOSITION = re.compile(r"[A-Za-z0-9_]+")


def parse_formula(formula, where="formula"):
    """A DNF formula of the reference format as a list of conjunctions.

    Parameters
    ----------
    formula : str
        E.g. ``"e&!g&!n"`` or ``"a&!n|b"``; ``True`` and ``False`` are constants.
    where : str
        What to name in errors.

    Returns
    -------
    list of list of (str, bool)
        One list of ``(proposition, wanted)`` per disjunct (``"True"``/``"False"`` kept as
        propositions: :func:`_holds` reads them).

    Raises
    ------
    ValueError
        For empty parts or characters other than propositions, ``&``, ``|``, ``!``.
    """
    disjuncts = []
    for disjunct in formula.replace(" ", "").split("|"):
        literals = []
        for literal in disjunct.split("&"):
            wanted = True
            while literal.startswith("!"):
                wanted, literal = not wanted, literal[1:]
            if not _PROPOSITION.fullmatch(literal):
                raise ValueError(
                    f"{where}: {formula!r} is not a formula of propositions joined by '&', '|' "
                    "and '!' (e.g. 'e&!n')"
                )
            literals.append((literal, wanted))
        disjuncts.append(literals)
    return disjuncts


def _holds(disjuncts, event):
    """Whether a parsed formula holds when ``event`` is the only true proposition."""

    def value(proposition):
        if proposition in ("True", "False"):
            return proposition == "True"
        return proposition == event

    return any(all(value(p) == wanted for p, wanted in literals) for literals in disjuncts)


def _read(path_or_text):
    """``(lines, name)``: the text itself when it holds a newline, else the file it names."""
    if not isinstance(path_or_text, (str, os.PathLike)):
        raise TypeError(
            f"path_or_text must be a file path or the machine's text, got "
            f"{type(path_or_text).__name__}"
        )
    text = os.fspath(path_or_text)
    if "\n" in text:
        return text.splitlines(), "machine text"
    if not os.path.isfile(text):
        raise ValueError(f"machine file {text!r} does not exist or is not a file")
    try:
        with open(text) as handle:
            return handle.read().splitlines(), f"machine file {text!r}"
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"machine file {text!r} cannot be read: {error}") from None


def _literal(line, number, name, what):
    try:
        return ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"{name} line {number}: expected {what}, got {line.strip()!r}") from None


def _transition(line, number, name):
    """``(u1, u2, formula, reward)`` of one transition line."""
    form = "(u1, u2, 'formula', ConstantRewardFunction(r))"
    try:
        node = ast.parse(line.strip(), mode="eval").body
    except SyntaxError:
        node = None
    if not (isinstance(node, ast.Tuple) and len(node.elts) == 4):
        raise ValueError(f"{name} line {number}: expected {form}, got {line.strip()!r}")
    u1, u2, formula, reward = node.elts
    if isinstance(reward, ast.Call):
        if not (
            isinstance(reward.func, ast.Name)
            and reward.func.id == "ConstantRewardFunction"
            and len(reward.args) == 1
            and not reward.keywords
        ):
            raise ValueError(
                f"{name} line {number}: only ConstantRewardFunction(r) rewards are supported, "
                f"got {ast.unparse(reward)!r}"
            )
        reward = reward.args[0]
    try:
        values = [ast.literal_eval(item) for item in (u1, u2, formula, reward)]
    except ValueError:
        raise ValueError(f"{name} line {number}: expected {form}, got {line.strip()!r}") from None
    u1, u2, formula, reward = values
    if not (isinstance(u1, int) and isinstance(u2, int) and not isinstance(u1, bool)):
        raise ValueError(f"{name} line {number}: machine states must be ints, got {u1!r}, {u2!r}")
    if not isinstance(formula, str):
        raise ValueError(f"{name} line {number}: the formula must be a quoted str, got {formula!r}")
    if isinstance(reward, bool) or not isinstance(reward, (int, float)):
        raise ValueError(f"{name} line {number}: the reward must be a number, got {reward!r}")
    return u1, u2, formula, float(reward)


def load_reward_machine(path_or_text, events=None):
    """Read a reward machine in the reference code's text format (see the module docstring).

    Parameters
    ----------
    path_or_text : str or os.PathLike
        A file, or the text itself (a str with a newline).
    events : sequence of str, optional
        More events to evaluate the formulas for, beside the propositions the formulas name and
        ``""``: the labels a world uses. Pass them when a formula can be true of a proposition it
        does not name (e.g. ``'!a'`` moving on anything but ``a``), so that those events move
        the machine as the reference would.

    Returns
    -------
    RewardMachine
        Its states are the file's, plus the sink (the last state) when some event is accepted
        by no formula of a state.

    Raises
    ------
    TypeError
        For a ``path_or_text`` that is neither a path nor text, or ``events`` that are not str.
    ValueError
        Naming the file (or "machine text") and the line: a missing file, a bad initial state
        or terminal list, a malformed transition, a non-constant reward, a malformed formula,
        two formulas of one state that accept the same event with different outcomes.
    """
    lines, name = _read(path_or_text)
    numbered = [(n, line.split("#", 1)[0]) for n, line in enumerate(lines, 1)]
    numbered = [(n, line) for n, line in numbered if line.strip()]
    if len(numbered) < 2:
        raise ValueError(
            f"{name} must hold the initial state, the list of terminal states and the "
            "transitions, one a line"
        )
    (n0, first), (n1, second) = numbered[:2]
    initial = _literal(first, n0, name, "the initial state (an int)")
    terminal = _literal(second, n1, name, "the list of terminal states, e.g. [2]")
    if isinstance(initial, bool) or not isinstance(initial, int):
        raise ValueError(f"{name} line {n0}: the initial state must be an int, got {initial!r}")
    if not isinstance(terminal, (list, tuple, set)) or not all(
        isinstance(u, int) and not isinstance(u, bool) for u in terminal
    ):
        raise ValueError(
            f"{name} line {n1}: the terminal states must be a list of ints, got {terminal!r}"
        )
    rules = {}  # u1 -> [(line, parsed formula, u2, reward)], in file order
    for number, line in numbered[2:]:
        u1, u2, formula, reward = _transition(line, number, name)
        if u1 in terminal:  # the reference ignores them too
            continue
        parsed = parse_formula(formula, f"{name} line {number}")
        rules.setdefault(u1, []).append((number, parsed, u2, reward))
    alphabet = {p for u in rules.values() for rule in u for lits in rule[1] for p, _ in lits}
    alphabet -= {"True", "False"}
    if events is not None:
        if isinstance(events, str) or not all(isinstance(e, str) for e in events):
            raise TypeError(f"events must be a sequence of str, got {events!r}")
        alphabet |= set(events)
    alphabet = sorted(alphabet | {""})
    named = [initial, *terminal, *rules, *(rule[2] for u in rules.values() for rule in u)]
    sink = max(named) + 1
    transitions = {}
    for u1, rules_of_u in rules.items():
        for event in alphabet:
            accepted = {
                (u2, reward): number for number, f, u2, reward in rules_of_u if _holds(f, event)
            }
            if len(accepted) > 1:
                lines_named = ", ".join(str(n) for n in accepted.values())
                raise ValueError(
                    f"{name} lines {lines_named}: formulas of state {u1} accept the event "
                    f"{event!r} with different outcomes (at most one may hold)"
                )
            u2, reward = next(iter(accepted), (sink, 0.0))
            if (u2, reward) != (u1, 0.0):
                transitions[(u1, event)] = (u2, reward)
    return RewardMachine(transitions, initial=initial, terminal=terminal)
