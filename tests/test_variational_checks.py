"""Variational fits that must not be silently wrong: given samples checked like IRL's
demonstrations, diverging fits warn, the features natural gradient is sound in float32."""

import warnings

import jax
import numpy as np
import optax
import pytest
from conftest import random_grid
from helpers import run_float32_script

import pgm_rl
from pgm_rl import irl
from pgm_rl.variational import fit_policy, fit_policy_to_samples


def _draws(env, horizon=4, n=20):
    draws = pgm_rl.solve(env, horizon, 1.0).sample(jax.random.key(0), n)
    return {k: np.asarray(v) for k, v in draws.items()}


# ----------------------------------------------------------------------------- one check


def test_samples_that_contradict_the_actions_or_the_start_are_refused_as_irl_refuses_them():
    env = random_grid(0)
    draws = _draws(env)
    moved = draws["states"].copy()
    moved[:, 2] = 5 if env.start_state != 5 else 4  # a state the move cannot reach
    started = draws["states"].copy()
    started[:, 0] = (env.start_state + 1) % env.n_states
    features = np.ones((env.n_states, 1))
    for states, words in ((moved, r"impossible move at step 1"), (started, r"possible start")):
        bad = {"actions": draws["actions"], "states": states}
        with pytest.raises(ValueError, match=words) as from_samples:
            fit_policy_to_samples(env, bad)
        with pytest.raises(ValueError, match=words) as from_irl:
            irl.log_likelihood([0.0], env, features, bad)
        # one check: the same words, only the names of the arguments differ
        assert str(from_samples.value).replace("samples", "X").replace("sample", "x") == str(
            from_irl.value
        ).replace("demonstrations", "X").replace("demonstration", "x")
    # batch axes are named in the message
    batched = {
        "actions": draws["actions"].reshape(4, 5, -1),
        "states": moved.reshape(4, 5, -1),
    }
    with pytest.raises(ValueError, match=r"sample 0, 0 makes an impossible move at step 1"):
        fit_policy_to_samples(env, batched)


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"num_steps": -1}, ValueError, "num_steps must be a positive int"),
        ({"num_steps": 2.5}, TypeError, "num_steps must be a positive int"),
        ({"states": lambda s: s + 0.5}, TypeError, r"samples\['states'\] must be an integer"),
        ({"n": 0}, ValueError, r"samples\['actions'\] must have shape .* at least one sample"),
        ({"n": 0, "states": None}, ValueError, r"at least one sample"),
        ({"states": lambda s: s[:, :-1]}, ValueError, r"samples\['states'\] must have shape"),
        ({"beta": -1.0}, ValueError, "beta"),
    ],
)
def test_fit_policy_to_samples_names_the_bad_argument_before_any_work(change, error, words):
    env = random_grid(0)
    draws = _draws(env)
    n = change.get("n", len(draws["actions"]))
    samples = {"actions": draws["actions"][:n], "states": draws["states"][:n]}
    if "states" in change:
        if change["states"] is None:
            del samples["states"]
        else:
            samples["states"] = change["states"](samples["states"])
    kwargs = {k: v for k, v in change.items() if k in ("num_steps", "beta")}
    with pytest.raises(error, match=words):
        fit_policy_to_samples(env, samples, "features", features=np.eye(9), **kwargs)


def test_samples_without_states_name_what_is_random_in_the_world():
    """Actions alone fix the states only when nothing else is random. Before: a random start
    with deterministic dynamics was called "a stochastic MDP"."""
    env = random_grid(0)
    random_start = pgm_rl.TabularMDP.from_outcomes(
        env.outcome_states, env.outcome_probs, env.outcome_rewards, np.full(9, 1.0 / 9)
    )
    slippery = pgm_rl.GridWorld(np.zeros((3, 3)), (0, 0), slip=0.2)
    actions = {"actions": _draws(env)["actions"]}
    for world, words in (
        (random_start, r"on an MDP with a random start over 9 states$"),
        (slippery, r"on an MDP with stochastic dynamics$"),
    ):
        with pytest.raises(
            ValueError, match=r"samples must hold 'states' \(\.\.\., T \+ 1\) " + words
        ):
            fit_policy_to_samples(world, actions)
    fitted = fit_policy_to_samples(env, actions)  # deterministic: rolled out from the actions
    assert fitted.log_policy.shape == (4, 9, 5)


# ----------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("rate", [1e6, -1.0])
def test_a_fit_that_ends_below_its_start_warns_naming_the_step_size(rate):
    env = random_grid(0)
    with pytest.warns(RuntimeWarning, match=r"below its start .* step size of the optimizer"):
        fit = fit_policy(env, 4, 1.0, optimizer=optax.sgd(rate), num_steps=50)
    # the numbers: KL 15.8, finite, returned
    assert fit.kl_to_posterior > 10


def test_a_fit_that_falls_far_below_its_best_warns():
    env = pgm_rl.GridWorld(np.random.default_rng(0).uniform(-2, 2, (3, 3)), (1, 1))
    # sgd(2.0) on the natural gradient oscillates: ELBO 0.47 at the start, 3.16 at best, 0.68
    # after 5 steps (above the start, far below the best)
    with pytest.warns(RuntimeWarning, match=r"ended at 0.67.*far below the best it reached"):
        fit = fit_policy(env, 4, 1.0, optimizer=optax.sgd(2.0), num_steps=5)
    assert float(fit.elbo_trace[0]) < fit.elbo < float(fit.elbo_trace.max()) - 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"parametrization": "stationary"},
        {"natural_gradient": False},
        {"optimizer": optax.sgd(1.9)},
        {"objective": "score", "key": jax.random.key(0), "num_steps": 200},
    ],
    ids=["default", "stationary", "adam", "sgd-1.9", "score"],
)
def test_converging_fits_do_not_warn(kwargs):
    env = random_grid(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fit = fit_policy(env, 4, 1.0, **kwargs)
    assert fit.kl_to_posterior < 0.05


# ----------------------------------------------------------------------------- features


def test_zero_features_give_the_uniform_policy():
    env = random_grid(0, (2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fit = fit_policy(env, 4, 1.0, parametrization="features", features=np.zeros((6, 2)))
    assert np.all(np.asarray(fit.params) == 0)
    np.testing.assert_allclose(fit.policy, 1.0 / env.n_actions, rtol=1e-15)


F32_FEATURES = """
import json, warnings
import numpy as np
import jax
assert not jax.config.jax_enable_x64
import pgm_rl
from pgm_rl.variational import fit_policy

warnings.simplefilter("error", RuntimeWarning)
rng = np.random.default_rng(0)
env = pgm_rl.GridWorld(rng.uniform(-2, 2, (3, 3)), (1, 1))
FEATURES = {"zeros": np.zeros((9, 2)), "one-hot": np.eye(9)[:, [0, 4]],
            "random": rng.normal(size=(9, 2))}
out = {}
for name, f in FEATURES.items():
    fit = fit_policy(env, 4, 1.0, parametrization="features", features=f, num_steps=300)
    assert fit.log_policy.dtype == np.float32
    out[name] = fit.elbo
print(json.dumps(out))
"""


def test_features_natural_gradient_is_sound_in_float32(tmp_path):
    # before: "diverged: the ELBO is nan at step 1" (zeros), 6 (one-hot), 43 (random)
    f32 = run_float32_script(F32_FEATURES, tmp_path)
    # the same fits in float64
    rng = np.random.default_rng(0)
    grid = pgm_rl.GridWorld(rng.uniform(-2, 2, (3, 3)), (1, 1))
    features = {"zeros": np.zeros((9, 2)), "one-hot": np.eye(9)[:, [0, 4]]}
    features["random"] = rng.normal(size=(9, 2))
    for name, f in features.items():
        fit = fit_policy(grid, 4, 1.0, parametrization="features", features=f, num_steps=300)
        # ELBO ~ 3: float32 rounding of the 300 steps, far below any difference in fit
        assert f32[name] == pytest.approx(fit.elbo, abs=1e-3), name
