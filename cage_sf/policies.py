"""Scripted blue policies for benchmarks and parity runs: `sleep`, `random` or `module:function`.

A policy maps (observations, action masks, rng) to one action index per agent; it may be called for
agents that are busy (the backend then drops the action, as CybORG does).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from cage_sf import cc4
from cage_sf.errors import UsageError

Policy = Callable[[dict[str, np.ndarray], dict[str, np.ndarray], np.random.Generator], dict[str, int]]

_SLEEP = {agent: cc4.sleep_action(cc4.agent_type(agent)) for agent in cc4.AGENTS}


def sleep(obs: dict[str, np.ndarray], masks: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, int]:
    return dict(_SLEEP)


def random_valid(obs: dict[str, np.ndarray], masks: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, int]:
    """A uniformly random unmasked action for every agent."""
    return {agent: int(rng.choice(np.flatnonzero(masks[agent]))) for agent in cc4.AGENTS}


BUILTIN: dict[str, Policy] = {"sleep": sleep, "random": random_valid}


def load_policy(name: str) -> Policy:
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, _, function = name.partition(":")
    if not function:
        raise UsageError(f"unknown policy {name!r}: use {', '.join(BUILTIN)} or module:function")
    try:
        return getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load policy {name!r}: {exc}") from None
