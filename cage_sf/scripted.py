"""Scripted blue defenders: teachers for imitation, yardsticks for benchmarks, and the policies of parity runs.

`load_policy(name)` returns a factory: call it for a fresh policy at the start of each episode. A policy
maps (observations, action masks, rng, analysis) to one action index per agent, where `analysis[agent]` marks
the host slots on which the agent's Analyse that finished in the last step found red's files (the backends'
`analysis`); it is called every step, also for agents that are busy (the backend then drops the action, as
CybORG does). Given the observations of only some agents, the built-in policies decide those agents alone, as
they would in the joint call (a CybORG submission asks each agent separately: `cage_sf/scripted_submission.py`).

  sleep          every agent sleeps
  random         every agent draws uniformly from its whole action space, masked indices included
                 (the `random` policy of docs/cc4.md §11)
  random-valid   a uniformly random unmasked action
  remove-restore reactive: Remove a host whose malicious-process flag is up, Restore it if it comes back
  restore-decoy  reactive: decoys on every server first, then Restore any host whose process flag is up
  analyse-restore  Restore a host whose process flag is up or whose Analyse found red's files, otherwise
                 Analyse the agent's hosts in turn
  remove-analyse-restore  Remove a host whose process flag is (or was, while the agent was busy) up: an
                 exploit's user shell, and Remove costs nothing; then Analyse it; Restore (-1) only where Analyse
                 found an escalation's file, or an exploit's on a host not Removed since its last flag; otherwise
                 Analyse the agent's hosts in turn (docs/experiments.md: +49 over analyse-restore on the
                 simulator); the best scripted defender the project ships
  oracle         sees the true state (our simulator's `privileged_state`): Remove or Restore wherever red is,
                 otherwise keep a decoy on every host; a privileged reference (remove-analyse-restore, which
                 leaves phishing footholds alone, beats it) and a privileged teacher
  module:function  your own policy function, or a class whose instances are policies

A policy with `needs_state = True` (the oracle) also takes `state=backend.privileged_state()` every step: the
loops that play policies on a backend pass it through `true_state`. CybORG has no such state, so these policies
run on our simulator only and are never a CybORG submission (`cage_sf/scripted_submission.py` refuses them).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from cage_sf import cc4
from cage_sf.agent.cc4_memory import ESCALATION_FILE
from cage_sf.backends import make_backend
from cage_sf.errors import UsageError
from cage_sf.evaluate import evaluation_episode
from cage_sf.sim.topology import BLUE_SUBNETS, NUM_SUBNETS

Policy = Callable[
    [dict[str, np.ndarray], dict[str, np.ndarray], np.random.Generator, dict[str, np.ndarray]], dict[str, int]
]
POLICY_ARGUMENTS = "(observations, masks, rng, analysis)"

_KIND = {agent: cc4.agent_type(agent) for agent in cc4.AGENTS}
_SLEEP = {agent: cc4.sleep_action(kind) for agent, kind in _KIND.items()}


def sleep(obs: dict[str, np.ndarray], masks: dict[str, np.ndarray], rng, analysis=None) -> dict[str, int]:
    return dict(_SLEEP)


def random_any(obs: dict[str, np.ndarray], masks: dict[str, np.ndarray], rng, analysis=None) -> dict[str, int]:
    return {agent: int(rng.integers(cc4.NUM_ACTIONS[kind])) for agent, kind in sorted(_KIND.items()) if agent in obs}


def random_valid(obs: dict[str, np.ndarray], masks: dict[str, np.ndarray], rng, analysis=None) -> dict[str, int]:
    return {agent: int(rng.choice(np.flatnonzero(masks[agent]))) for agent in cc4.AGENTS if agent in masks}


def process_flags(vector: np.ndarray, kind: int) -> np.ndarray:
    """The malicious-process flag of every host slot of an agent, in action-slot order."""
    return np.asarray(vector)[cc4.host_flag_indices(kind, cc4.PROCESS_FLAGS)]


class ReactiveDefender:
    """Base of the reactive policies: remembers its own in-flight actions, so it never submits while busy
    (CybORG would drop the action and still charge a Restore). A flag shows for one step only: a defender with
    `remembers_flags` also acts on the flags that came while it was busy, until it Removes or Restores the host
    (the others see the flags of the steps they decide in, as the scripts the docs' baselines measured)."""

    remembers_flags = False

    def __init__(self) -> None:
        self._step = 0
        self._free_at = dict.fromkeys(cc4.AGENTS, 0)
        self._durations = [cc4.action_durations(kind) for kind in (cc4.SMALL, cc4.LARGE)]
        self._pending = {agent: np.zeros(cc4.HOST_SLOTS[kind], bool) for agent, kind in _KIND.items()}
        self._cleared = [[cc4.action_index(kind, c) for c in ("Remove", "Restore")] for kind in (cc4.SMALL, cc4.LARGE)]

    def __call__(self, obs: dict[str, np.ndarray], masks: dict[str, np.ndarray], rng, analysis=None) -> dict[str, int]:
        actions = dict(_SLEEP)
        for agent, kind in _KIND.items():
            if agent not in obs:
                continue
            if analysis and agent in analysis:
                self.observe(agent, analysis[agent])
            flagged = process_flags(obs[agent], kind).astype(bool)
            if self.remembers_flags:
                flagged = self._pending[agent] = self._pending[agent] | flagged
            if self._step >= self._free_at[agent]:
                action = actions[agent] = self.choose(agent, kind, flagged.copy(), masks[agent])
                self._free_at[agent] = self._step + int(self._durations[kind][action])
                for start in self._cleared[kind]:
                    if start <= action < start + cc4.HOST_SLOTS[kind]:
                        self._pending[agent][action - start] = False
        self._step += 1
        return actions

    def observe(self, agent: str, found: np.ndarray) -> None:
        """The host slots where the agent's last Analyse found red's files (the analysing defenders look)."""

    def choose(self, agent: str, kind: int, flagged: np.ndarray, mask: np.ndarray) -> int:
        raise NotImplementedError


class RemoveRestore(ReactiveDefender):
    def __init__(self) -> None:
        super().__init__()
        self._removed = {agent: set() for agent in cc4.AGENTS}

    def choose(self, agent: str, kind: int, flagged: np.ndarray, mask: np.ndarray) -> int:
        for slot in np.flatnonzero(flagged):
            if slot in self._removed[agent]:
                self._removed[agent].discard(slot)
                return cc4.action_index(kind, "Restore", slot)
            self._removed[agent].add(slot)
            return cc4.action_index(kind, "Remove", slot)
        return _SLEEP[agent]


class RestoreDecoy(ReactiveDefender):
    def __init__(self) -> None:
        super().__init__()
        self._decoyed = {agent: set() for agent in cc4.AGENTS}

    def choose(self, agent: str, kind: int, flagged: np.ndarray, mask: np.ndarray) -> int:
        if flagged.any():
            return cc4.action_index(kind, "Restore", int(np.flatnonzero(flagged)[0]))
        decoy = cc4.action_index(kind, "DeployDecoy")
        block = cc4.SLOTS_PER_SUBNET
        servers = [s for b in range(cc4.SUBNETS[kind]) for s in range(block * b, block * b + cc4.SERVER_SLOTS)]
        for slot in servers:
            if mask[decoy + slot] and slot not in self._decoyed[agent]:
                self._decoyed[agent].add(slot)
                return decoy + slot
        return _SLEEP[agent]


class AnalyseRestore(ReactiveDefender):
    """Restore what is known to hold red (a process flag: an exploit's shell; or red's files found by Analyse,
    which also betray escalations and footholds no flag shows), otherwise Analyse the next host in turn."""

    def __init__(self) -> None:
        super().__init__()
        self._found = {agent: set() for agent in cc4.AGENTS}
        self._next = dict.fromkeys(cc4.AGENTS, 0)

    def observe(self, agent: str, found: np.ndarray) -> None:
        self._found[agent].update(np.flatnonzero(found).tolist())

    def choose(self, agent: str, kind: int, flagged: np.ndarray, mask: np.ndarray) -> int:
        restore, analyse = cc4.action_index(kind, "Restore"), cc4.action_index(kind, "Analyse")
        known = sorted(self._found[agent] | set(np.flatnonzero(flagged).tolist()))
        if known:
            self._found[agent].discard(known[0])
            return restore + known[0]
        return analyse + self._next_in_turn(agent, kind, mask)

    def _next_in_turn(self, agent: str, kind: int, mask: np.ndarray) -> int:
        """The next host slot of the agent's round of Analyses."""
        analyse = cc4.action_index(kind, "Analyse")
        hosts = np.flatnonzero(mask[analyse : analyse + cc4.HOST_SLOTS[kind]])
        slot = int(hosts[self._next[agent] % len(hosts)])
        self._next[agent] += 1
        return slot


class RemoveAnalyseRestore(AnalyseRestore):
    """A flagged host (flagged while the agent was busy too) first gets the free Remove (it kills an exploit's
    user shell) and then an Analyse to check that nothing else of red's stayed; a Restore only where Analyse
    finds what a Remove cannot clear: an escalation's file (red's session there is root), or an exploit's file on
    a host not Removed since its last flag (a shell nobody saw, or one that came back). An exploit's file stays
    after the Remove that killed its shell, so without that distinction every Removed host would be Restored
    too. Restores are the largest share of an episode's cost a defender controls. Its round of Analyses takes the
    valid host analysed longest ago (those checks included; ties: the lowest slot): a choice the agent's memory
    can show, so a network can imitate it (held-out agreement 98%, against 89% for a fixed round that the checks
    do not move; the same score)."""

    remembers_flags = True

    def __init__(self) -> None:
        super().__init__()
        self._to_check: dict[str, list[int]] = {agent: [] for agent in cc4.AGENTS}
        self._removed: dict[str, set[int]] = {agent: set() for agent in cc4.AGENTS}
        self._analysed_at = {agent: np.full(cc4.HOST_SLOTS[kind], -1) for agent, kind in _KIND.items()}

    def observe(self, agent: str, found: np.ndarray) -> None:
        for slot in np.flatnonzero(found).tolist():
            if found[slot] == ESCALATION_FILE or slot not in self._removed[agent]:
                self._found[agent].add(slot)

    def choose(self, agent: str, kind: int, flagged: np.ndarray, mask: np.ndarray) -> int:
        restore, analyse, remove = (cc4.action_index(kind, c) for c in ("Restore", "Analyse", "Remove"))
        if self._found[agent]:
            slot = min(self._found[agent])
            self._found[agent].discard(slot)
            self._removed[agent].discard(slot)
            return restore + slot
        if len(flags := np.flatnonzero(flagged)):
            self._to_check[agent].append(int(flags[0]))
            self._removed[agent].add(int(flags[0]))
            return remove + int(flags[0])
        if self._to_check[agent]:
            slot = self._to_check[agent].pop(0)
        else:
            valid = np.flatnonzero(mask[analyse : analyse + cc4.HOST_SLOTS[kind]])
            slot = int(valid[np.argmin(self._analysed_at[agent][valid])])
        self._analysed_at[agent][slot] = self._step
        return analyse + slot


class Oracle(ReactiveDefender):
    """Sees where red is and at what privilege (`CC4Sim.privileged_state`), and does what the best script would with
    a perfect view: Restore a host the moment red is root there (the script waits for its round of Analyses to find
    escalate.sh), Remove a user shell that a process flag betrayed (free, and Remove knows only those PIDs), and
    leave other user footholds alone until they escalate (a Restore costs 1: restoring them too, its earlier rule,
    scored 41 points worse on 100 episodes). Root before user, servers before users. With no Analyse to do, it
    keeps a decoy on every host. Near the ceiling of a defence: +12.6 ± 2.7 over remove-analyse-restore on 300
    simulator episodes (docs/experiments.md)."""

    needs_state = True

    def __init__(self) -> None:
        super().__init__()
        self._flagged = {agent: np.zeros(cc4.HOST_SLOTS[kind], bool) for agent, kind in _KIND.items()}
        self._removed = {agent: np.zeros(cc4.HOST_SLOTS[kind], bool) for agent, kind in _KIND.items()}
        self._slots = {agent: np.zeros((cc4.HOST_SLOTS[kind], 3), np.float32) for agent, kind in _KIND.items()}

    def __call__(
        self, obs: dict[str, np.ndarray], masks: dict[str, np.ndarray], rng, analysis=None, state=None
    ) -> dict[str, int]:
        if state is None:
            raise UsageError(
                "policy 'oracle' reads the true state (privileged_state), which only our simulator gives: "
                "it cannot play on CybORG or as a submission"
            )
        per_slot = np.asarray(state)[: NUM_SUBNETS * cc4.SLOTS_PER_SUBNET * 3].reshape(NUM_SUBNETS, -1, 3)
        for agent, vector in obs.items():
            self._slots[agent] = np.concatenate([per_slot[s] for s in BLUE_SUBNETS[cc4.AGENTS.index(agent)]])
            held = self._slots[agent][:, 0] > 0  # flags seen while busy count too; marks end when red has gone
            self._flagged[agent] = (self._flagged[agent] | process_flags(vector, _KIND[agent]).astype(bool)) & held
            self._removed[agent] &= held
        return super().__call__(obs, masks, rng, analysis)

    def choose(self, agent: str, kind: int, flagged: np.ndarray, mask: np.ndarray) -> int:
        privilege, decoys = self._slots[agent][:, 0], self._slots[agent][:, 1]
        root = np.flatnonzero(privilege >= 1)
        if len(root):
            return cc4.action_index(kind, "Restore", _server_first(root))
        shells = np.flatnonzero((privilege > 0) & self._flagged[agent] & ~self._removed[agent])
        if len(shells):
            slot = _server_first(shells)
            self._removed[agent][slot] = True
            return cc4.action_index(kind, "Remove", slot)
        decoy = cc4.action_index(kind, "DeployDecoy")
        bare = np.flatnonzero(mask[decoy : decoy + cc4.HOST_SLOTS[kind]] & (decoys == 0))
        return decoy + int(bare[0]) if len(bare) else _SLEEP[agent]


def _server_first(slots: np.ndarray) -> int:
    """A server's slot before a user host's (red on a server reaches further), then the lowest slot."""
    return int(max(slots, key=lambda s: (s % cc4.SLOTS_PER_SUBNET < cc4.SERVER_SLOTS, -s)))


def true_state(policy: Policy, env) -> dict[str, np.ndarray]:
    """The keyword arguments of a policy's call beyond the blue view: the backend's true state for a policy that
    reads it (`needs_state`), nothing for the others. UsageError on a backend without one (CybORG)."""
    if not getattr(policy, "needs_state", False):
        return {}
    if not hasattr(env, "privileged_state"):
        raise UsageError(
            f"{type(policy).__name__} reads the true state (privileged_state), which only our simulator gives "
            f"(--backend=sim), not {type(env).__name__}"
        )
    return {"state": env.privileged_state()}


BUILTIN: dict[str, Callable[[], Policy]] = {
    "sleep": lambda: sleep,
    "random": lambda: random_any,
    "random-valid": lambda: random_valid,
    "remove-restore": RemoveRestore,
    "restore-decoy": RestoreDecoy,
    "analyse-restore": AnalyseRestore,
    "remove-analyse-restore": RemoveAnalyseRestore,
    "oracle": Oracle,
}


def load_policy(name: str) -> Callable[[], Policy]:
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, _, attribute = name.partition(":")
    if not attribute:
        raise UsageError(f"unknown policy {name!r}: use {', '.join(BUILTIN)} or module:function")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load policy {name!r}: {exc}") from None
    arguments = [None] * (5 if inspect.isclass(found) else 4)  # a class's __call__ also takes self
    try:
        inspect.signature(found.__call__ if inspect.isclass(found) else found).bind(*arguments)
    except TypeError:
        raise UsageError(f"policy {name!r} must take {POLICY_ARGUMENTS}") from None
    return found if inspect.isclass(found) else lambda: found


def policy_returns(policy: str, episodes: int, seed: int = 0, backend: str = "sim") -> list[float]:
    """A policy of this module deciding all five agents at once, with the true state for one that reads it (the
    oracle: simulator only), in the loop of CybORG's evaluation.py. Episode k is played on a backend seeded
    `seed + k`, as `cage-sf evaluate --seed=seed` plays a submission, so every policy meets the same networks."""
    new_policy, rng = load_policy(policy), np.random.default_rng(seed)
    episodes_ = tqdm(range(episodes), desc=f"{backend}: {policy}", unit="episode", file=sys.stderr)
    return [_episode_return(new_policy(), make_backend(backend, seed=seed + k), rng) for k in episodes_]


def scripted_chooser(act: Policy, env, rng: np.random.Generator) -> tuple[Callable, dict[str, np.ndarray]]:
    """A scripted defender as `evaluation_episode`'s `choose`: each step it gets this episode's masks (drawn at
    reset), what each agent's Analyse found, and the true state if it reads it. Also returns the masks it fills."""
    masks: dict[str, np.ndarray] = {}

    def choose(observations: dict[str, np.ndarray]) -> dict[str, int]:
        if env.step_count == 0:  # this episode's masks, drawn at reset
            masks.update({agent: env.action_mask(agent) for agent in cc4.AGENTS})
        analysis = {agent: env.analysis(agent) for agent in cc4.AGENTS}
        return act(observations, masks, rng, analysis, **true_state(act, env))

    return choose, masks


def _episode_return(act, env, rng) -> float:
    """One episode's return, counted as evaluation.py counts it."""
    choose, _ = scripted_chooser(act, env, rng)
    return sum(reward for _, _, reward in evaluation_episode(env, choose) if reward is not None)
