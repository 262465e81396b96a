"""CC4 blue-team environments behind one interface, mirroring CybORG's `BlueEnterpriseWrapper`.

A backend is a structured multi-agent env (dicts keyed by agent name, per-agent shapes). Only
`cage_sf.adapter` turns it into Sample Factory's fixed-shape arrays.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np
from gymnasium import spaces

from cage_sf import cc4
from cage_sf.errors import UsageError

BACKENDS = ("auto", "cyborg", "sim", "synthetic", "delayed-payoff", "signalling")

CYBORG_INSTALL_HINT = (
    "CybORG CC4 is not installed: clone https://github.com/cage-challenge/cage-challenge-4 "
    "and put its root on this Python's path (see README, 'Real CybORG')"
)


class CC4Env(Protocol):
    """The public API of `BlueEnterpriseWrapper` used by CybORG's evaluation, plus `busy_agents`."""

    agents: list[str]

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict]]: ...

    def step(
        self, actions: dict[str, int], messages: dict[str, np.ndarray] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict]]:
        """`info[agent]["action_mask"]` lists which indices target something that exists."""
        ...

    def action_space(self, agent: str) -> spaces.Discrete: ...

    def observation_space(self, agent: str) -> spaces.Space: ...

    def action_labels(self, agent: str) -> list[str]: ...

    def action_mask(self, agent: str) -> np.ndarray:
        """This episode's action mask (as in `info`); fixed from reset to the end of the episode."""
        ...

    def analysis(self, agent: str) -> np.ndarray:
        """What the agent's Analyse that finished in the last step found of red's files per host slot
        (observation order), as `cc4_memory.malware_in_files` codes: CybORG reports them in the dictionary
        observation only."""
        ...

    @property
    def step_count(self) -> int:
        """Env steps taken in this episode (0 right after reset)."""
        ...

    def busy_agents(self) -> set[str]:
        """Agents whose earlier multi-step action is still running: an action submitted now is dropped."""
        ...


def cyborg_available() -> bool:
    return importlib.util.find_spec("CybORG") is not None


def resolve_backend(name: str) -> str:
    """Map `auto` to a concrete backend: real CybORG when importable, else our simulator."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "cyborg" if cyborg_available() else "sim"
    if name == "cyborg" and not cyborg_available():
        raise UsageError(f"--backend=cyborg: {CYBORG_INSTALL_HINT}")
    return name


def make_backend(name: str, seed: int | None = None, steps: int = cc4.EPISODE_STEPS) -> CC4Env:
    name = resolve_backend(name)
    if name == "cyborg":
        from cage_sf.backends.cyborg import CybORGBackend

        return CybORGBackend(seed=seed, steps=steps)
    if name == "synthetic":
        from cage_sf.backends.synthetic import SyntheticBackend

        return SyntheticBackend(seed=seed, steps=steps)
    if name == "delayed-payoff":
        from cage_sf.backends.delayed_payoff import DelayedPayoffBackend

        return DelayedPayoffBackend(seed=seed, steps=steps)
    if name == "signalling":
        from cage_sf.backends.signalling import SignallingBackend

        return SignallingBackend(seed=seed, steps=steps)
    from cage_sf.sim import make_cc4

    return make_cc4(seed=seed, steps=steps)
