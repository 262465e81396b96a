"""Our simulator against statistics measured on real CybORG CC4 (docs/cc4.md §11, reference_stats.json).

Both policies of §11 are replayed exactly: `sleep` (every agent submits Sleep) and `random` (every agent draws
uniformly from its whole Discrete space, masked indices included, with numpy.default_rng(10000 + episode), agents
in sorted order). Returns are counted like CybORG's evaluation.py: the reward of the final step (k = 499, where
done becomes True) is not added. Statistics without a reference SEM use the simulator's own spread for both
samples (the reference has 40 episodes).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.parity import HOLDING_STEPS, RED_ACTIONS, RED_SUCCESSES, record_episode
from cage_sf.sim import make_cc4
from cage_sf.sim.red import ACTION_NAMES, RedTeam
from cage_sf.sim.topology import BLUE_SUBNETS, OZA, OZB, POPULATED, SUBNET_NAMES

# Measured on real CybORG; the project's shared/ folder sits beside the checkout (as in CI).
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "cc4" / "reference_stats.json"
EPISODES = 150  # per policy: ~75k env steps, well under a minute on one core
# The return within 2 SEM as asked. Phase sums get 3: the reference's sleep phase-0 mean (-186.6 +- 8.5, seeds 0-39)
# is itself low; 75 fresh CybORG episodes (seeds 300-339, 400-434) gave -214.5 +- 7.0. The ~200 detail
# comparisons (decomposition, holdings, flags, red counts) use a wider band to keep the family-wise error small.
Z_MAIN, Z_PHASE, Z_DETAIL = 2.0, 3.0, 3.5

pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason=f"{REFERENCE} is not available")


@dataclass
class Episodes:
    """Per-episode measurements of one policy: `cage-sf parity`'s statistics plus red counters and topology."""

    stats: list[dict[str, float]] = field(default_factory=list)
    red_counts: list[Counter] = field(default_factory=list)
    users: list[np.ndarray] = field(default_factory=list)  # (8,) per POPULATED subnet
    servers: list[np.ndarray] = field(default_factory=list)
    services_per_host: list[np.ndarray] = field(default_factory=list)  # (non-OZ mean, OZ mean)

    def column(self, key: str) -> np.ndarray:
        return np.array([row[key] for row in self.stats])

    def flag_rate(self, agent: int, kind: str) -> np.ndarray:
        """The agent's flag rate over all hosts it watches (reference_stats' per-agent figure)."""
        subnets = [SUBNET_NAMES[s] for s in BLUE_SUBNETS[agent]]
        hosts = [self.column(f"topology/{s}/servers") + self.column(f"topology/{s}/users") for s in subnets]
        flagged = sum(self.column(f"flags/{kind}/{s}") * n for s, n in zip(subnets, hosts, strict=True))
        return flagged / sum(hosts)


def _instrument(episode_counts: list[Counter]):
    """Count red actions by outcome, why exploits fail before choosing an exploit, and phishing attempts into
    episode_counts[-1] (names as in reference_stats' counters)."""
    execute, exploit, phish = RedTeam.execute, RedTeam._exploit, RedTeam.phish

    def counted_execute(self, agent, action, topo, hosts, rng):
        ok = execute(self, agent, action, topo, hosts, rng)
        episode_counts[-1][f"{ACTION_NAMES[action.kind]}_{'TRUE' if ok else 'FALSE'}"] += 1
        return ok

    def counted_exploit(self, agent, source, target, topo, hosts, rng):
        if not source.abstract:
            episode_counts[-1]["exploit_pre_not_abstract_session"] += 1
        elif target not in source.ports:
            episode_counts[-1]["exploit_pre_ip_not_in_ports"] += 1
        return exploit(self, agent, source, target, topo, hosts, rng)

    def counted_phish(self, host, topo, hosts):
        before = sum(len(a.sessions) for a in self.agents)
        phish(self, host, topo, hosts)
        episode_counts[-1]["phishing_calls"] += 1
        episode_counts[-1]["phishing_new_session"] += sum(len(a.sessions) for a in self.agents) > before

    return {"execute": counted_execute, "_exploit": counted_exploit, "phish": counted_phish}


def simulate(policy: str, episodes: int) -> Episodes:
    """Episodes as `cage-sf parity` plays them (episode s: engine seed s, policy rng 10000 + s)."""
    out = Episodes()
    with pytest.MonkeyPatch.context() as patch:
        for name, wrapper in _instrument(out.red_counts).items():
            patch.setattr(RedTeam, name, wrapper)
        for episode in range(episodes):
            out.red_counts.append(Counter())
            out.stats.append(record_episode("sim", policy, seed=episode))
    for episode in range(episodes):
        sim = make_cc4(seed=episode)
        sim.reset()  # the scenario the episode played (the constructor draws one, reset the next, as in CybORG)
        topo = sim.topology
        operational = np.isin(topo.subnet, (OZA, OZB))
        services = topo.services.sum(axis=1)
        out.services_per_host.append(np.array([services[~operational].mean(), services[operational].mean()]))
        out.users.append(np.array([topo.is_user[topo.subnet_hosts[s]].sum() for s in POPULATED]))
        out.servers.append(np.array([(~topo.is_user[topo.subnet_hosts[s]]).sum() for s in POPULATED]))
    return out


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module", params=["sleep", "random"])
def policy(request, reference) -> tuple[str, Episodes, dict]:
    return request.param, simulate(request.param, EPISODES), reference[request.param]


def assert_close(name: str, sim_values, ref_mean: float, z: float, ref_sem: float | None = None, n_ref: int = 40):
    """|mean_sim - mean_ref| <= z * sqrt(sem_sim^2 + sem_ref^2); sem_ref from the sim's spread if not given."""
    values = np.asarray(sim_values, dtype=float)
    sd = values.std(ddof=1)
    sem_sim = sd / np.sqrt(len(values))
    sem_ref = sd / np.sqrt(n_ref) if ref_sem is None else ref_sem
    tolerance = z * np.hypot(sem_sim, sem_ref) + 1e-9
    assert abs(values.mean() - ref_mean) <= tolerance, (
        f"{name}: sim {values.mean():.4g} vs reference {ref_mean:.4g} (tolerance {tolerance:.3g})"
    )


def test_episode_return(policy):
    name, sim, ref = policy
    returns = sim.column("return")
    assert_close(f"{name} return", returns, ref["eval_return"]["mean"], Z_MAIN, ref["eval_return"]["sem"])
    # The spread must match too: a std far off means a wrong mechanism even with the right mean.
    assert 0.6 < np.std(returns, ddof=1) / ref["eval_return"]["std"] < 1.6


def test_reward_by_phase(policy):
    name, sim, ref = policy
    for phase in range(3):
        stats = ref["phase_return"][str(phase)]
        assert_close(f"{name} phase {phase}", sim.column(f"phase{phase}/sum"), stats["mean"], Z_PHASE, stats["sem"])


def test_reward_decomposition(policy):
    name, sim, ref = policy
    for phase in range(3):
        parts = ref["reward_contribution_mean_per_episode"][str(phase)]
        for key in ("LWF", "ASF", "RIA"):
            values = sim.column(f"phase{phase}/{key.lower()}")
            if name == "sleep" and key == "ASF":
                assert (values == 0).all(), "no blocks under sleep, so no green access fails"
                continue
            assert_close(f"{name} phase {phase} {key}", values, parts[key], Z_DETAIL)
    restore = sum(sim.column(f"phase{phase}/restore") for phase in range(3))
    if name == "sleep":
        assert (restore == 0).all()
    else:
        cost = ref["action_cost_sum"]
        assert_close(f"{name} restore cost", restore, cost["mean"], Z_DETAIL, cost["sem"])


def test_red_holdings(policy):
    name, sim, ref = policy
    for step in HOLDING_STEPS:
        for subnet in (SUBNET_NAMES[s] for s in POPULATED):
            expected = ref["red_holdings"][str(step)][subnet]
            for ours, key in (("any", "user_or_root_frac"), ("root", "root_frac")):
                values = sim.column(f"holdings@{step}/{subnet}/{ours}")
                assert_close(f"{name} k={step} {subnet} {key}", values, expected[key], Z_DETAIL)


def test_flag_rates(policy):
    name, sim, ref = policy
    for i, agent in enumerate(cc4.AGENTS):
        expected = list(ref["flag_rates_per_existing_host_step"][agent].values())  # proc, conn
        for column, kind in enumerate(("process", "connection")):
            assert_close(f"{name} {agent} {kind} flag", sim.flag_rate(i, kind), expected[column], Z_DETAIL)


def test_red_activity(policy):
    """Red action counts (dropped stale-session actions included, as CybORG's counters include them) and phishing."""
    name, sim, ref = policy
    keys = ["ExploitRemoteService", "PrivilegeEscalate", "Impact", "DegradeServices", "DiscoverRemoteSystems"]
    keys += ["AggressiveServiceDiscovery", "StealthServiceDiscovery", "DiscoverDeception"]
    for key in keys:
        counts = sim.column(f"red/{key}")
        assert_close(f"{name} {key}", counts, ref["red_executed_actions_mean_per_episode"][key], Z_DETAIL)
    for key in ("phishing_calls", "phishing_new_session"):
        counts = [c[key] for c in sim.red_counts]
        assert_close(f"{name} {key}", counts, ref["counters_mean_per_episode"][key], Z_DETAIL)
    if name == "sleep":  # nothing is ever dropped, so the TRUE/FALSE split is directly comparable
        for key in ("ExploitRemoteService_TRUE", "Impact_TRUE", "Impact_FALSE", "DegradeServices_TRUE"):
            counts = [c[key] for c in sim.red_counts]
            assert_close(f"{name} {key}", counts, ref["red_executed_actions_mean_per_episode"][key], Z_DETAIL)
        assert sum(sim.column(f"red/{key}/dropped").sum() for key in RED_ACTIONS) == 0
        # As in CybORG: without blue interference every action but Exploit and Impact always succeeds.
        always = ("DiscoverRemoteSystems", "AggressiveServiceDiscovery", "StealthServiceDiscovery")
        always += ("DiscoverDeception", "PrivilegeEscalate", "DegradeServices")
        assert sum(c[f"{key}_FALSE"] for c in sim.red_counts for key in always) == 0
    else:
        for key in ("ExploitRemoteService", "DiscoverDeception", "Impact"):
            dropped = f"dropped_no_session_red_{key}"
            counts = sim.column(f"red/{key}/dropped")
            assert_close(f"{name} {dropped}", counts, ref["counters_mean_per_episode"][dropped], Z_DETAIL)
        # Under blue interference outcomes depend on stale ids and removed sessions. CybORG's counters call a
        # dropped action TRUE (red then observes only its session check), so compare executed successes plus drops.
        for key in RED_SUCCESSES:
            observed = sim.column(f"red/{key}/success") + sim.column(f"red/{key}/dropped")
            reported = ref["red_executed_actions_mean_per_episode"][f"{key}_TRUE"]
            assert_close(f"{name} {key}_TRUE as CybORG reports it", observed, reported, Z_DETAIL)
        for reason in ("exploit_pre_not_abstract_session", "exploit_pre_ip_not_in_ports"):
            counts = [c[reason] for c in sim.red_counts]
            assert_close(f"{name} {reason}", counts, ref["counters_mean_per_episode"][reason], Z_DETAIL)


def test_topology_counts(policy):
    name, sim, ref = policy
    users, servers = np.array(sim.users), np.array(sim.servers)
    assert users.min() >= 3 and users.max() <= 10 and servers.min() >= 1 and servers.max() <= 6
    for j, subnet in enumerate(POPULATED):
        counts = ref["topology_mean_counts"][SUBNET_NAMES[subnet]]
        assert_close(f"{name} users {SUBNET_NAMES[subnet]}", users[:, j], counts["user"], Z_DETAIL)
        assert_close(f"{name} servers {SUBNET_NAMES[subnet]}", servers[:, j], counts["server"], Z_DETAIL)
    # U{3..10} users and U{1..6} servers per subnet: means 6.5 and 3.5 (52 and 28 in all).
    assert_close(f"{name} users", users.sum(axis=1), 52.0, Z_DETAIL, ref_sem=0.0)
    assert_close(f"{name} servers", servers.sum(axis=1), 28.0, Z_DETAIL, ref_sem=0.0)
    # sshd + U{0..3} add-ons (+ OTService in the operational zones): 2.5 and 3.5 services per host on average.
    services = np.array(sim.services_per_host)
    assert_close(f"{name} services per host", services[:, 0], 2.5, Z_DETAIL, ref_sem=0.0)
    assert_close(f"{name} services per OT host", services[:, 1], 3.5, Z_DETAIL, ref_sem=0.0)
