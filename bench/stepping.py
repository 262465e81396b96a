"""Step a backend with a scripted policy for a while: the raw-speed measurement both benchmarks share."""

from __future__ import annotations

import time

import numpy as np

from cage_sf.backends import make_backend
from cage_sf.gc_tuning import tune_garbage_collector
from cage_sf.scripted import load_policy


def env_steps_in(backend: str, policy: str, seconds: float, seed: int = 0, tuned_gc: bool = False) -> int:
    """Env steps done in `seconds` (construction and the first reset excluded; later resets included).
    `tuned_gc`: the garbage-collector settings training's env factory applies."""
    env = make_backend(backend, seed=seed)
    if tuned_gc:
        tune_garbage_collector()
    act = load_policy(policy)()
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    masks = {agent: np.asarray(info[agent]["action_mask"]) for agent in info}
    steps, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        obs, _, terminated, truncated, info = env.step(act(obs, masks, rng, {a: env.analysis(a) for a in obs}))
        steps += 1
        if any(terminated.values()) or any(truncated.values()):
            obs, info = env.reset()
            act = load_policy(policy)()
            masks = {agent: np.asarray(info[agent]["action_mask"]) for agent in info}
    return steps
