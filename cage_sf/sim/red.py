"""The six FiniteStateRedAgents: FSM policy (docs/cc4.md §5.2-5.5), red action effects (§5.6), zone ownership (§5.7).

CybORG's quirks are kept on purpose (the evaluation scores them): port memory is per abstract session while
the session parameter is drawn from every id ever seen; the exploit selector drops its best option; hosts
gained silently enter the FSM as K; a foreign exploit only turns U (not UD) into F.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from cage_sf.sim.state import P22, P25, P80, P443, P3390, HostState
from cage_sf.sim.topology import (
    APACHE,
    MYSQL,
    OT,
    RED_OWNER,
    RED_SUBNETS,
    SERVER0_LINKS,
    TOMCAT,
    Topology,
)

# FSM host states and red actions, in CybORG's table order.
K, KD, S, SD, U, UD, R, RD, F = range(9)
STATE_NAMES = ("K", "KD", "S", "SD", "U", "UD", "R", "RD", "F")
DRS, ASD, SSD, DD, EXP, PE, IMP, DEG, WD = range(9)
ACTION_NAMES = (
    "DiscoverRemoteSystems",
    "AggressiveServiceDiscovery",
    "StealthServiceDiscovery",
    "DiscoverDeception",
    "ExploitRemoteService",
    "PrivilegeEscalate",
    "Impact",
    "DegradeServices",
    "Withdraw",
)
DURATION = (1, 1, 3, 2, 4, 2, 2, 2, 1)

_ = -1  # "None" cell: the state is kept
# Table 5.4 (success). The failure table has the same None pattern and maps every state to itself.
SUCCESS = np.array(
    [
        # DRS ASD SSD  DD EXP  PE IMP DEG  WD
        [KD, S, S, _, _, _, _, _, _],  # K
        [KD, SD, SD, _, _, _, _, _, _],  # KD
        [SD, _, _, S, U, _, _, _, _],  # S
        [SD, _, _, SD, UD, _, _, _, _],  # SD
        [UD, _, _, _, _, R, _, _, S],  # U
        [UD, _, _, _, _, RD, _, _, SD],  # UD
        [RD, _, _, _, _, _, R, R, S],  # R
        [RD, _, _, _, _, _, RD, RD, SD],  # RD
        [F, _, _, _, _, _, _, _, _],  # F
    ]
)
# Table 5.5: (actions, cumulative probabilities) per state. Withdraw has probability 0 and is left out.
POLICY: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...] = (
    ((DRS, ASD, SSD), (0.5, 0.75, 1.0)),
    ((ASD, SSD), (0.5, 1.0)),
    ((DRS, DD, EXP), (0.25, 0.5, 1.0)),
    ((DD, EXP), (0.25, 1.0)),
    ((DRS, PE), (0.5, 1.0)),
    ((PE,), (1.0,)),
    ((DRS, IMP, DEG), (0.5, 0.75, 1.0)),
    ((IMP, DEG), (0.5, 1.0)),
)
SCAN_DETECTION = {ASD: 0.75, SSD: 0.25}  # N1
ROUTE_EVENT = 0.95  # N2, per host on an SSH brute-force route
SQL_DETECTION = 0.95  # P1

# Exploits by weight: (name, remembered ports it needs). FTP (port 21) never applies; Windows ones never do.
SSH, HTTP_RFI, HTTPS_RFI, SQL, HARAKA = range(5)
EXPLOIT_NAMES = ("SSHBruteForce", "HTTPRFI", "HTTPSRFI", "SQLInjection", "HarakaRCE")


def _exploit_options(ports: int) -> tuple[int, ...]:
    """Applicable exploits in ascending weight; with two or more, CybORG drops the heaviest [BUG] (§5.6 step 4)."""
    applicable = [
        exploit
        for exploit, ok in (
            (SSH, ports & P22),
            (HTTP_RFI, ports & P80),
            (HTTPS_RFI, ports & P443),
            (SQL, ports & P3390 and ports & (P80 | P443)),
            (HARAKA, ports & P25),
        )
        if ok
    ]
    return tuple(applicable[:-1]) if len(applicable) >= 2 else tuple(applicable)


EXPLOIT_OPTIONS = tuple(_exploit_options(ports) for ports in range(64))


class RedAction(NamedTuple):
    kind: int
    host: int  # target host id (-1 for DiscoverRemoteSystems)
    session: int
    subnet: int  # DiscoverRemoteSystems only (-1 otherwise)


@dataclass
class Session:
    host: int
    abstract: bool  # only abstract sessions can scan and exploit
    pid: int  # its process on the host (HostState.pids); Remove kills it if blue's Monitor read this PID there
    root: bool = False
    ports: dict[int, int] = field(default_factory=dict)  # port memory: target host -> port bits last scanned


@dataclass
class RedAgent:
    """One FiniteStateRedAgent: its sessions plus the FSM's (never pruned) memory."""

    index: int
    allowed: frozenset[int]
    known_subnets: list[int]
    subnet_of: np.ndarray  # host -> subnet (the topology's)
    sessions: dict[int, Session] = field(default_factory=dict)
    host_states: dict[int, int] = field(default_factory=dict)  # insertion-ordered like CybORG's dict
    known_ids: list[int] = field(default_factory=list)  # every id ever reported as an abstract session
    fsm_step: int = 0
    active: bool = False
    pending: RedAction | None = None  # action in progress
    remaining: int = 0
    result: tuple[RedAction, bool] | None = None  # executed action awaiting its FSM transition
    mentioned: list[int] = field(default_factory=list)  # hosts named by last step's results and notices
    dirty: bool = True  # something the FSM reads changed since its last consultation
    holds_foreign: bool = False  # a session outside its zone awaits hand-over at the end of the step

    def add_session(self, host: int, abstract: bool, pid: int, root: bool = False) -> int:
        sid = max(self.sessions) + 1 if self.sessions else 0
        self.sessions[sid] = Session(host, abstract, pid, root)
        self.dirty = True
        self.holds_foreign |= self.subnet_of[host] not in self.allowed
        return sid

    def learn_subnet(self, subnet: int) -> None:
        """Subnets enter the DiscoverRemoteSystems choices when red holds or scans a host there (own zone only)."""
        if subnet in self.allowed and subnet not in self.known_subnets:
            self.known_subnets.append(subnet)

    def session_hosts(self) -> set[int]:
        return {s.host for s in self.sessions.values()}

    def consult(self, topo: Topology, rng: np.random.Generator) -> RedAction | None:
        """One FSM consultation (§5.3): update host states from last step's observation, then maybe pick an action."""
        if self.dirty:
            self._observe(topo)
        self.fsm_step += 1
        if self.pending is not None:
            return None
        known = [host for host, state in self.host_states.items() if state != F]
        if not known or not self.known_ids:
            return None
        host = known[int(rng.random() * len(known))]
        actions, cumulative = POLICY[self.host_states[host]]
        draw = rng.random()
        kind = next((a for a, c in zip(actions, cumulative, strict=True) if draw < c), actions[-1])
        session = self.known_ids[int(rng.random() * len(self.known_ids))]
        if kind == DRS:
            subnet = self.known_subnets[int(rng.random() * len(self.known_subnets))]
            return RedAction(DRS, -1, session, subnet)
        return RedAction(kind, host, session, -1)

    def _observe(self, topo: Topology) -> None:
        fsm_step_zero = self.fsm_step == 0
        if self.result is not None:
            action, success = self.result
            self.result = None
            if action.kind == DRS:
                targets = [h for h in self.host_states if topo.subnet[h] == action.subnet]
            else:
                targets = [action.host] if action.host in self.host_states else []
            for host in targets:
                state = self.host_states[host]
                new = SUCCESS[state, action.kind]
                if new == _:
                    continue
                if not success:
                    new = state
                if new == U and topo.subnet[host] not in self.allowed:
                    new = F
                self.host_states[host] = int(new)
        held = self.session_hosts()
        for host in (*self.mentioned, *held):
            if host not in self.host_states:
                self.host_states[host] = U if fsm_step_zero else K
        self.mentioned.clear()
        for host in held:
            self.learn_subnet(int(topo.subnet[host]))
        for host, state in self.host_states.items():
            if state in (U, UD, R, RD) and host not in held:
                self.host_states[host] = KD
        self.dirty = False


class RedTeam:
    """All red agents plus the actions that touch several of them (phishing, re-assignment, blue removals)."""

    def __init__(self, topo: Topology, hosts: HostState, rng: np.random.Generator):
        self._subnet = topo.subnet
        self.agents: list[RedAgent] = []
        for index, subnets in enumerate(RED_SUBNETS):
            osint_subnet = subnets[int(rng.integers(len(subnets)))]
            osint_host = int(rng.choice(topo.subnet_hosts[osint_subnet]))
            agent = RedAgent(index, frozenset(subnets), [osint_subnet], topo.subnet)
            if index == 0:  # only red_agent_0 starts with a (non-root) foothold
                agent.add_session(osint_host, abstract=True, pid=hosts.new_pid(osint_host))
                agent.known_ids.append(0)
                agent.active = True
            self.agents.append(agent)

    # ----------------------------------------------------------------------------------- step phases
    def intake(self, topo: Topology, rng: np.random.Generator) -> list[tuple[RedAgent, RedAction, bool]]:
        """Consult active agents, store new actions of idle ones, tick; return the actions due this step.

        Each comes with `runnable`: an action whose session id is gone is dropped before execution (no effect,
        no FSM transition) but, as in CybORG, still reaches the reward calculator.
        """
        due = []
        for agent in self.agents:
            if agent.active:
                action = agent.consult(topo, rng)
                if action is not None:
                    agent.pending, agent.remaining = action, DURATION[action.kind]
            if agent.pending is not None:
                agent.remaining -= 1
                if agent.remaining < 1:
                    action, agent.pending = agent.pending, None
                    due.append((agent, action, action.session in agent.sessions))
        return due

    def execute(
        self, agent: RedAgent, action: RedAction, topo: Topology, hosts: HostState, rng: np.random.Generator
    ) -> bool:
        """Run one red action (§5.6); record its result for the agent's next FSM consultation."""
        success = self._run(agent, action, topo, hosts, rng)
        agent.result = (action, success)
        agent.dirty = True
        return success

    def end_of_step(self, rng: np.random.Generator) -> None:
        """Hand foreign sessions to the zone owner, (de)activate agents, re-elect primaries, report abstract ids."""
        for agent in self.agents:
            if not agent.holds_foreign:
                continue
            agent.holds_foreign = False
            moved = [(sid, s) for sid, s in agent.sessions.items() if RED_OWNER[self._subnet[s.host]] != agent.index]
            for sid, session in moved:
                del agent.sessions[sid]
                owner = self.agents[RED_OWNER[self._subnet[session.host]]]
                owner.add_session(session.host, abstract=True, pid=session.pid, root=session.root)
                owner.mentioned.append(session.host)
            agent.dirty = True
        for agent in self.agents:
            agent.active = bool(agent.sessions)
            if not agent.active:
                continue
            if 0 not in agent.sessions:
                ids = list(agent.sessions)
                agent.sessions[0] = agent.sessions.pop(ids[int(rng.random() * len(ids))])
            for sid, session in agent.sessions.items():
                if session.abstract and sid not in agent.known_ids:
                    agent.known_ids.append(sid)

    # ----------------------------------------------------------------------------------- cross-agent effects
    def phish(self, host: int, topo: Topology, hosts: HostState) -> None:
        """A green's phishing roll: the subnet's owner gets an abstract `user` session unless red is already there.
        It raises no event, so blue never reads its PID."""
        if any(s.host == host for agent in self.agents for s in agent.sessions.values()):
            return
        self.agents[RED_OWNER[topo.subnet[host]]].add_session(host, abstract=True, pid=hosts.new_pid(host))

    def remove(self, host: int, hosts: HostState) -> None:
        """Blue Remove: kill every non-root process on the host whose PID blue's Monitor once read there.

        A red session bound to one dies with it, an undetected session that re-used a freed suspicious PID
        included [QUIRK]; a decoy's process is restarted under a new PID.
        """
        seen = hosts.suspicious[host]
        for session in self._drop(host, lambda s: s.pid in seen and not s.root):
            hosts.pids[host].discard(session.pid)
        red_pids = {s.pid for agent in self.agents for s in agent.sessions.values() if s.host == host}
        for decoy_pid in sorted(hosts.pids[host] & seen - red_pids):
            hosts.pids[host].discard(decoy_pid)
            hosts.new_pid(host)

    def restore(self, host: int) -> None:
        """Blue Restore: every red session on the host is gone."""
        self._drop(host, lambda s: True)

    def _drop(self, host: int, condition: Callable[[Session], bool]) -> list[Session]:
        dropped = []
        for agent in self.agents:
            doomed = [sid for sid, s in agent.sessions.items() if s.host == host and condition(s)]
            dropped.extend(agent.sessions.pop(sid) for sid in doomed)
            if doomed:
                agent.dirty = True
        return dropped

    def holdings(self, num_hosts: int) -> tuple[np.ndarray, np.ndarray]:
        """(any red session, a root session) per host."""
        held = np.zeros(num_hosts, dtype=bool)
        root = np.zeros(num_hosts, dtype=bool)
        for agent in self.agents:
            for s in agent.sessions.values():
                held[s.host] = True
                root[s.host] |= s.root
        return held, root

    # ----------------------------------------------------------------------------------- red actions
    def _run(self, agent: RedAgent, action: RedAction, topo: Topology, hosts: HostState, rng) -> bool:
        source = agent.sessions.get(action.session)
        if source is None:  # removed by blue earlier in this step
            return False
        kind, target = action.kind, action.host
        if kind == DRS:
            agent.mentioned.extend(topo.subnet_hosts[action.subnet].tolist())
            return True
        if kind == DD:
            return True  # decoy guesses are never used by the FSM [BUG]
        if kind in (ASD, SSD):
            if not source.abstract or hosts.blocks[topo.subnet[target], topo.subnet[source.host]]:
                return False
            source.ports[target] = hosts.ports(target)
            if rng.random() < SCAN_DETECTION[kind] or hosts.has_decoy(target):
                hosts.conn_flag[target] = True
            agent.mentioned.append(target)
            agent.learn_subnet(int(topo.subnet[target]))
            return True
        if kind == EXP:
            return self._exploit(agent, source, target, topo, hosts, rng)
        own = [s for s in agent.sessions.values() if s.host == target]
        if kind == PE:
            if not own:
                return False
            if not any(s.root for s in own):
                chosen = own[int(rng.random() * len(own))]
                if not source.abstract:  # the escalation is launched from the source session
                    return False
                chosen.root = True
                hosts.malware[target] = hosts.escalation[target] = True  # escalate.sh, density 0.9
            if target == topo.server0[topo.subnet[target]]:
                agent.mentioned.extend(int(topo.server0[s]) for s in SERVER0_LINKS[int(topo.subnet[target])])
            return True
        if not any(s.root for s in own):
            return False
        if kind == IMP:
            if not hosts.active[target, OT]:
                return False
            hosts.active[target, OT] = False
            return True
        if kind == DEG:
            active = hosts.active[target]
            hosts.reliability[target, active] = np.maximum(hosts.reliability[target, active] - 20, 0)
            return True
        return False

    def _exploit(self, agent: RedAgent, source: Session, target: int, topo: Topology, hosts: HostState, rng) -> bool:
        """ExploitRemoteService (§5.6): remembered ports pick the exploit, the target's real processes decide."""
        if not source.abstract or target not in source.ports:
            return False
        if hosts.blocks[topo.subnet[target], topo.subnet[source.host]]:
            return False
        options = EXPLOIT_OPTIONS[source.ports[target]]
        if not options:
            return False
        exploit = options[int(rng.random() * len(options))] if len(options) > 1 else options[0]
        if exploit == SSH:
            if source.host != target and rng.random() < ROUTE_EVENT:
                hosts.conn_flag[source.host] = True
            hosts.conn_flag[target] = True
            hosts.proc_flag[target] = True
            self._start_shell(agent, target, hosts, seen=True)
            return True
        if exploit == SQL:
            if not hosts.active[target, MYSQL]:
                return False
            seen = rng.random() < SQL_DETECTION
            hosts.proc_flag[target] |= seen
            self._start_shell(agent, target, hosts, seen)
            return True
        if exploit == HTTP_RFI:
            real_apache = hosts.active[target, APACHE] and not hosts.apache_decoy[target]
            if not real_apache and (hosts.apache_decoy[target] or hosts.vsftpd_decoys[target]):
                hosts.conn_flag[target] = True
            return False
        if exploit == HTTPS_RFI and hosts.active[target, TOMCAT]:
            hosts.conn_flag[target] = True
        return False

    @staticmethod
    def _start_shell(agent: RedAgent, target: int, hosts: HostState, seen: bool) -> None:
        """An exploit's user shell and its file; when its process-creation event fires, blue's end-of-step
        Monitor reads the PID (CON has no blue agent, so its list is never read)."""
        pid = hosts.new_pid(target)
        hosts.malware[target] = True  # the exploit's cmd.sh, density 0.9, whether or not blue saw the process
        if seen:
            hosts.suspicious[target].add(pid)
        agent.add_session(target, abstract=False, pid=pid)
