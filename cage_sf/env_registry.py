"""Sample Factory registration of the CC4 blue team as env `cc4` (module level: SF's spawned processes
import this module when they unpickle `make_cc4_env`)."""

from __future__ import annotations

import argparse
import functools

from sample_factory.envs.env_utils import register_env
from sample_factory.utils.utils import str2bool

from cage_sf import sf_compat
from cage_sf.adapter import CC4SampleFactoryEnv, CC4VectorEnv
from cage_sf.backends import BACKENDS, make_backend
from cage_sf.gc_tuning import tune_garbage_collector

sf_compat.apply()

ENV_NAME = "cc4"


def add_cc4_env_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CC4")
    group.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="auto = real CybORG when importable, else our simulator"
    )
    group.add_argument("--episode_steps", default=500, type=int, help="CC4 episode length (evaluation: 500)")
    group.add_argument(
        "--step_timeout_s",
        default=30.0,
        type=float,
        help="an env step slower than this ends the episode as a fault and the env is rebuilt",
    )
    group.add_argument(
        "--host_memory",
        default=True,
        type=str2bool,
        help="per-host memory features (flag traces, counts since Restore, decoys); False zeroes them (an ablation)",
    )
    group.add_argument(
        "--vector_size",
        default=1,
        type=int,
        help="with batched_sampling: CC4 envs stepped together as one Sample Factory env (5 agents each)",
    )
    group.add_argument(
        "--cyborg_vector_size",
        default=2,
        type=int,
        help="vector_size on --backend=cyborg unless --vector_size is given on the command line",
    )
    group.add_argument(
        "--messages",
        default=False,
        type=str2bool,
        help="each agent also sends its team 8 bits per step, sampled by the policy and learned with its actions",
    )
    group.add_argument(
        "--stagger_episodes",
        default=True,
        type=str2bool,
        help="with batched_sampling: end first episodes at spread steps so the envs of a vector do not run in lockstep",
    )


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
