"""Sample Factory registration of the CC4 blue team as env `cc4` (module level: SF's spawned processes
import this module when they unpickle `make_cc4_env`)."""

from __future__ import annotations

import functools

from sample_factory.envs.env_utils import register_env

from cage_sf import sf_compat
from cage_sf.adapter import CC4SampleFactoryEnv, CC4VectorEnv
from cage_sf.backends import make_backend
from cage_sf.gc_tuning import tune_garbage_collector

sf_compat.apply()

ENV_NAME = "cc4"


def make_cc4_env(
    full_env_name: str, cfg, env_config=None, render_mode: str | None = None
) -> CC4VectorEnv | CC4SampleFactoryEnv:
    """Batched sampling gets `vector_size` envs as arrays, non-batched sampling one env as per-agent dicts."""
    backend = functools.partial(make_backend, cfg.backend, steps=cfg.episode_steps)
    if cfg.batched_sampling:
        stagger = cfg.episode_steps if cfg.stagger_episodes else 0
        env = CC4VectorEnv(
            backend,
            cfg.vector_size,
            cfg.step_timeout_s,
            cfg.host_memory,
            render_mode,
            stagger,
            cfg.messages,
            cfg.privileged_critic,
        )
    else:
        env = CC4SampleFactoryEnv(
            backend, cfg.step_timeout_s, cfg.host_memory, render_mode, cfg.messages, cfg.privileged_critic
        )
    tune_garbage_collector()
    return env


register_env(ENV_NAME, make_cc4_env)
