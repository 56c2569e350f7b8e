"""Quick start: the exact posterior and an MCMC kernel on the notebook's grid world."""

import jax
from numpyro.infer import MCMC

import pgm_rl
from pgm_rl.kernels import TrajectoryMH

jax.config.update("jax_enable_x64", True)

env = pgm_rl.GridWorld.notebook()  # 6x6 grid, goal (reward 1e4) at (0, 5), start (5, 0)
horizon, beta = 6, 0.05  # a short horizon: the goal is out of reach, the posterior is wide

exact = pgm_rl.solve(env, horizon, beta)  # backward messages: the ground truth
print(f"log Z = {exact.log_z:.4f}   E[return] = {exact.expected_return:.3f}")

mcmc = MCMC(
    TrajectoryMH(pgm_rl.trajectory_model),
    num_warmup=500,
    num_samples=2000,
    num_chains=4,
    chain_method="vectorized",
    progress_bar=False,
)
mcmc.run(jax.random.key(0), env, horizon, beta)
states = mcmc.get_samples()["states"]  # (chains * draws, T + 1)

tv = pgm_rl.diagnostics.tv_distance(
    pgm_rl.diagnostics.empirical_state_marginals(states, env.n_states), exact.state_marginals
)
print(f"TrajectoryMH: mean TV of state marginals vs exact = {tv.mean():.4f}")
