"""The timing harness the benchmarks share: NumPyro's MCMC loop for any kernel, jitted once."""

import jax
from jax import lax


def chains_runner(kernel, model_args, warmup, draws):
    """``keys (chains,) -> samples (chains, draws, ...)``: NumPyro's MCMC loop, jitted once.

    Runs ``kernel.init`` and ``kernel.sample`` (the MCMCKernel interface ``MCMC`` drives) under
    ``jax.vmap`` over chains and ``lax.scan`` over steps, then the kernel's ``postprocess_fn``.
    ``MCMC.run`` recompiles on every call (about 1.5 s here), which would swamp the timings.
    """

    def one_chain(key):
        state = kernel.init(key, warmup, None, model_args, {})
        postprocess = kernel.postprocess_fn(model_args, {})  # built-ins set it up in init

        def step(state, _):
            state = kernel.sample(state, model_args, {})
            return state, getattr(state, kernel.sample_field)

        state, _ = lax.scan(step, state, None, length=warmup)
        _, z = lax.scan(step, state, None, length=draws)
        return jax.vmap(postprocess)(z)

    return jax.jit(jax.vmap(one_chain))
