"""Mutable per-episode host state shared by the blue, green and red step functions (docs/cc4.md §13)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cage_sf.sim.topology import APACHE, HARAKA, MYSQL, NUM_SUBNETS, OT, SMTP, SSHD, TOMCAT, Topology

# Listening-port bits as remembered by red scans (port 1 = OTService; 21 is never open).
P22, P80, P443, P3390, P25, P1 = 1, 2, 4, 8, 16, 32


@dataclass
class HostState:
    """Services, decoys, blocks and this step's event flags; red sessions live with their red agents."""

    active: np.ndarray  # (H, NUM_SERVICES) bool: service present and running
    reliability: np.ndarray  # (H, NUM_SERVICES) int64 percent, 100 unless degraded
    apache_decoy: np.ndarray  # (H,) bool: the APACHE column holds a decoy, not the real apache2
    vsftpd_decoys: np.ndarray  # (H,) int64: stacked Vsftpd decoy processes (all listen on 80)
    blocks: np.ndarray  # (9, 9) bool: blocks[dst, src] = traffic from src into dst is blocked
    proc_flag: np.ndarray  # (H,) bool: a process-creation event happened on the host this step
    conn_flag: np.ndarray  # (H,) bool: a network-connection event happened on the host this step
    malware: np.ndarray  # (H,) bool: red left a file that blue's Analyse reports (an exploit's cmd.sh, escalate.sh)
    escalation: np.ndarray  # (H,) bool: one of them is an escalation's escalate.sh (red made a session root)
    pids: list[set[int]]  # per host: PIDs of processes started this episode (red sessions, decoys), counted from
    # the snapshot's highest PID as 0
    suspicious: list[set[int]]  # per host: PIDs blue's Monitor read from process-creation events; never cleared
    pid_rng: np.random.Generator  # PIDs draw from their own stream, like CybORG's per-host generator, so a rule
    # that matters only to Remove does not reshuffle every other draw of the episode

    @classmethod
    def initial(cls, topo: Topology, pid_rng: np.random.Generator) -> HostState:
        num_hosts = topo.num_hosts
        return cls(
            active=topo.services.copy(),
            reliability=np.full(topo.services.shape, 100, dtype=np.int64),
            apache_decoy=np.zeros(num_hosts, dtype=bool),
            vsftpd_decoys=np.zeros(num_hosts, dtype=np.int64),
            blocks=np.zeros((NUM_SUBNETS, NUM_SUBNETS), dtype=bool),
            proc_flag=np.zeros(num_hosts, dtype=bool),
            conn_flag=np.zeros(num_hosts, dtype=bool),
            malware=np.zeros(num_hosts, dtype=bool),
            escalation=np.zeros(num_hosts, dtype=bool),
            pids=[set() for _ in range(num_hosts)],
            suspicious=[set() for _ in range(num_hosts)],
            pid_rng=pid_rng,
        )

    def new_pid(self, host: int) -> int:
        """CybORG's create_pid: 1-9 above the host's highest live PID, so a freed PID can come back [QUIRK]."""
        pid = max(self.pids[host], default=0) + 1 + int(self.pid_rng.random() * 9)
        self.pids[host].add(pid)
        return pid

    def restore(self, topo: Topology, host: int) -> None:
        """Roll a host back to its creation snapshot: services back at 100 %, OTService running, decoys and red
        processes and files gone (blue's suspicious PIDs stay)."""
        self.active[host] = topo.services[host]
        self.reliability[host] = 100
        self.apache_decoy[host] = False
        self.vsftpd_decoys[host] = 0
        self.proc_flag[host] = False
        self.conn_flag[host] = False
        self.malware[host] = False
        self.escalation[host] = False
        self.pids[host].clear()

    def ports(self, host: int) -> int:
        """Bit set of the host's listening ports (real services and decoys)."""
        active = self.active[host]
        ports = P22 if active[SSHD] else 0
        if active[OT]:
            ports |= P1
        if active[APACHE] or self.vsftpd_decoys[host]:
            ports |= P80
        if active[MYSQL]:
            ports |= P3390
        if active[SMTP] or active[HARAKA]:
            ports |= P25
        if active[TOMCAT]:
            ports |= P443
        return ports

    def decoys(self) -> np.ndarray:
        """(H,) bool: the hosts running a decoy (Apache, Vsftpd, Tomcat or Haraka; the last two are only ever
        decoys)."""
        return self.apache_decoy | (self.vsftpd_decoys > 0) | self.active[:, TOMCAT] | self.active[:, HARAKA]

    def has_decoy(self, host: int) -> bool:
        return bool(self.decoys()[host])
