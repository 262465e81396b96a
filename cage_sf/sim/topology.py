"""Static facts of one CC4 episode: subnets, hosts, their initial services (docs/cc4.md §1).

Subnets are identified everywhere by their index in *sorted* name order (the order the blue wrapper
uses), hosts by a dense index over the user and server hosts of the eight populated subnets (routers and
the internet host never matter: they answer no pings, carry no sessions and are observed by nobody).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBNET_NAMES: tuple[str, ...] = (
    "admin_network_subnet",
    "contractor_network_subnet",
    "internet_subnet",
    "office_network_subnet",
    "operational_zone_a_subnet",
    "operational_zone_b_subnet",
    "public_access_zone_subnet",
    "restricted_zone_a_subnet",
    "restricted_zone_b_subnet",
)
ADM, CON, INT, OFF, OZA, OZB, PAZ, RZA, RZB = range(9)
NUM_SUBNETS = 9
# Host-generation (and CIDR-drawing) order of the scenario generator; INT holds no user/server host.
CREATION_ORDER: tuple[int, ...] = (RZA, OZA, RZB, OZB, CON, PAZ, ADM, OFF, INT)
POPULATED: tuple[int, ...] = CREATION_ORDER[:8]

# Blue agent -> defended subnets in sorted order (the wrapper's block order, docs/cc4.md §1.8).
BLUE_SUBNETS: tuple[tuple[int, ...], ...] = ((RZA,), (OZA,), (RZB,), (OZB,), (ADM, OFF, PAZ))
# Red agent -> allowed subnets; subnet -> the red agent owning it (docs/cc4.md §1.6, §5.7).
RED_SUBNETS: tuple[tuple[int, ...], ...] = ((CON,), (RZA,), (OZA,), (RZB,), (OZB,), (PAZ, ADM, OFF))
NUM_RED = len(RED_SUBNETS)
RED_OWNER = np.full(NUM_SUBNETS, -1, dtype=np.int64)
for _red, _subnets in enumerate(RED_SUBNETS):
    RED_OWNER[list(_subnets)] = _red

MIN_SERVERS, MAX_SERVERS = 1, 6  # per populated subnet, uniform (CybORG's MIN/MAX_SERVER_HOSTS)
MIN_USERS, MAX_USERS = 3, 10
SLOTS_PER_SUBNET = MAX_SERVERS + MAX_USERS  # wrapper slot order: server_0..5, user_0..9

# Service columns of the per-host service table. Decoys are services too (green LocalWork may pick them).
SSHD, OT, APACHE, MYSQL, SMTP, TOMCAT, HARAKA, VSFTPD = range(8)
NUM_SERVICES = 8
ADDONS = (APACHE, MYSQL, SMTP)

# "server_host_0 link knowledge": root on the key subnet's server_0 reveals these subnets' server_0 (§1.5).
SERVER0_LINKS: dict[int, tuple[int, ...]] = {
    CON: (RZA, RZB, PAZ),
    RZA: (OZA, CON),
    OZA: (RZA,),
    RZB: (OZB, CON),
    OZB: (RZB,),
    PAZ: (ADM, OFF, CON),
    ADM: (PAZ,),
    OFF: (PAZ,),
}


@dataclass(frozen=True)
class Topology:
    """One drawn network. Host arrays are indexed by dense host id (users then servers, per subnet)."""

    names: tuple[str, ...]
    subnet: np.ndarray  # (H,) sorted subnet index
    is_user: np.ndarray  # (H,) bool
    slot_host: np.ndarray  # (9, 16) host id per wrapper slot, -1 where the host does not exist
    server0: np.ndarray  # (9,) host id of <subnet>_server_host_0, -1 for INT
    subnet_hosts: tuple[np.ndarray, ...]  # per subnet: its host ids
    services: np.ndarray  # (H, NUM_SERVICES) bool: services present at creation (the Restore snapshot)
    cidrs: tuple[str, ...]  # per subnet, e.g. "10.0.42.0/24" (labels only)

    @property
    def num_hosts(self) -> int:
        return len(self.names)


def draw_topology(rng: np.random.Generator) -> Topology:
    """Draw hosts (3-10 users, 1-6 servers per subnet) and their add-on services, as the scenario generator does."""
    third_octets = rng.choice(256, size=NUM_SUBNETS, replace=False)
    cidrs = [""] * NUM_SUBNETS
    for subnet, octet in zip(CREATION_ORDER, third_octets, strict=True):
        cidrs[subnet] = f"10.0.{octet}.0/24"

    names: list[str] = []
    subnet_of: list[int] = []
    is_user: list[bool] = []
    slot_host = np.full((NUM_SUBNETS, SLOTS_PER_SUBNET), -1, dtype=np.int64)
    for subnet in POPULATED:
        users = int(rng.integers(MIN_USERS, MAX_USERS + 1))
        servers = int(rng.integers(MIN_SERVERS, MAX_SERVERS + 1))
        for kind, count, first_slot in (("user", users, MAX_SERVERS), ("server", servers, 0)):
            for i in range(count):
                slot_host[subnet, first_slot + i] = len(names)
                names.append(f"{SUBNET_NAMES[subnet]}_{kind}_host_{i}")
                subnet_of.append(subnet)
                is_user.append(kind == "user")

    num_hosts = len(names)
    subnet_arr = np.array(subnet_of, dtype=np.int64)
    services = np.zeros((num_hosts, NUM_SERVICES), dtype=bool)
    services[:, SSHD] = True
    services[:, OT] = (subnet_arr == OZA) | (subnet_arr == OZB)
    for host in range(num_hosts):
        count = int(rng.integers(0, 4))
        services[host, [ADDONS[i] for i in rng.choice(3, size=count, replace=False)]] = True

    return Topology(
        names=tuple(names),
        subnet=subnet_arr,
        is_user=np.array(is_user, dtype=bool),
        slot_host=slot_host,
        server0=slot_host[:, 0].copy(),
        subnet_hosts=tuple(np.flatnonzero(subnet_arr == s) for s in range(NUM_SUBNETS)),
        services=services,
        cidrs=tuple(cidrs),
    )
