"""A scripted defender of `cage_sf.scripted` as a CAGE Challenge 4 submission for CybORG's own evaluation.

    write_submission(Path("scripted"), "restore-decoy")
    python -m CybORG.Evaluation.evaluation scripted out/

CybORG's `evaluation.py` asks each blue agent for its own action (`get_action(observation, action_space)`),
while a policy of `cage_sf.scripted` maps all five agents' observations to five actions. `ScriptedAgent` gives
each agent its own instance of the policy and calls it with that agent's observation and action mask alone:
the reactive defenders decide each agent from its own observations and history, so every agent plays the
action the joint policy would have chosen for it. An agent tells a new episode from the env's step counter
(0 right after a reset) and starts a fresh policy then. The generated `submission.py` imports cage_sf, so it
runs where cage_sf is installed (the benchmark's machine), not as a self-contained challenge entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cage_sf import cc4
from cage_sf.agent.cc4_agent import analysis, episode_step
from cage_sf.errors import UsageError
from cage_sf.scripted import Policy, load_policy

SUBMISSION_PY = '''"""cage-sf's scripted defender {policy!r} (cage_sf/scripted.py) as a CAGE Challenge 4 submission.

Written by cage_sf.scripted_submission; needs cage_sf importable. Evaluate with
`python -m CybORG.Evaluation.evaluation <this directory> <output directory>`.
"""

from CybORG import CybORG
from CybORG.Agents.Wrappers.EnterpriseMAE import EnterpriseMAE

from cage_sf.scripted_submission import scripted_agents

POLICY = {policy!r}


class Submission:
    NAME: str = "cage-sf scripted {policy}"
    TEAM: str = "cage-sf"
    TECHNIQUE: str = "scripted {policy} defender (cage_sf.scripted)"
    AGENTS: dict = scripted_agents(POLICY)

    def wrap(env: CybORG) -> EnterpriseMAE:
        wrapped = EnterpriseMAE(env)
        for agent in Submission.AGENTS.values():
            agent.attach(wrapped)
        return wrapped
'''


def blue_view_policy(policy: str) -> Callable[[], Policy]:
    """The policy's factory, refused (UsageError) for one that reads the simulator's true state (the oracle): CybORG's
    blue agents see only their observations."""
    factory = load_policy(policy)
    if getattr(factory(), "needs_state", False):
        raise UsageError(
            f"policy {policy!r} reads our simulator's true state, which CybORG's blue agents cannot see: "
            "it cannot be a submission"
        )
    return factory


class ScriptedAgent:
    """One blue agent playing its share of a scripted policy. `attach(env)` gives it the wrapper whose action
    mask and step counter it reads (cage-sf backends or CybORG's `EnterpriseMAE`)."""

    def __init__(self, name: str, policy: str, seed: int | None = None):
        self.name = name
        self.policy = policy
        self._factory = blue_view_policy(policy)
        self._rng = np.random.default_rng(seed)
        self._act = None
        self.env = None
        self._calls = 0

    def attach(self, env) -> None:
        self.env = env

    def __repr__(self) -> str:
        return f"ScriptedAgent({self.name!r}, {self.policy!r})"

    def _mask(self, action_space) -> np.ndarray:
        if self.env is not None:
            return np.asarray(self.env.action_mask(self.name), dtype=bool)
        return np.ones(action_space.n if action_space is not None else cc4.NUM_ACTIONS[cc4.agent_type(self.name)], bool)

    def get_action(self, observation, action_space=None) -> int:
        if self._act is None or episode_step(self.env, self._calls) == 0:
            self._act = self._factory()  # a new episode
        self._calls += 1
        observations = {self.name: np.asarray(observation)}
        masks = {self.name: self._mask(action_space)}
        found = {self.name: analysis(self.env, self.name, cc4.HOST_SLOTS[cc4.agent_type(self.name)])}
        return int(self._act(observations, masks, self._rng, found)[self.name])


def scripted_agents(policy: str, seed: int | None = None) -> dict[str, ScriptedAgent]:
    return {name: ScriptedAgent(name, policy, None if seed is None else seed + i) for i, name in enumerate(cc4.AGENTS)}


def write_submission(directory: Path, policy: str) -> Path:
    """Write `directory/submission.py` for CybORG's evaluation.py; checks the policy first."""
    blue_view_policy(policy)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "submission.py").write_text(SUBMISSION_PY.format(policy=policy))
    return directory
