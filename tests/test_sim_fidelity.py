"""Our simulator against statistics measured on real CybORG CC4 (CC4_SPEC §11, reference_stats.json).

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
from cage_sf.sim import make_cc4
from cage_sf.sim.red import ACTION_NAMES, RedTeam
from cage_sf.sim.topology import BLUE_SUBNETS, OZA, OZB, POPULATED, SUBNET_NAMES

# Measured on real CybORG; the project's shared/ folder sits beside the checkout (as in CI).
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "cc4" / "reference_stats.json"
EPISODES = 150  # per policy: ~75k env steps, well under a minute on one core
HOLDING_STEPS = (100, 250, 400, 499)
# The return within 2 SEM as asked. Phase sums get 3: the reference's sleep phase-0 mean (-186.6 +- 8.5, seeds 0-39)
# is itself low; 75 fresh CybORG episodes (seeds 300-339, 400-434) gave -214.5 +- 7.0. The ~200 detail
# comparisons (decomposition, holdings, flags, red counts) use a wider band to keep the family-wise error small.
Z_MAIN, Z_PHASE, Z_DETAIL = 2.0, 3.0, 3.5

pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason=f"{REFERENCE} is not available")


@dataclass
class Episodes:
    """Per-episode measurements of one policy (lists are indexed by episode)."""

    returns: list[float] = field(default_factory=list)
    phase_sums: list[np.ndarray] = field(default_factory=list)  # (3,)
    terms: list[np.ndarray] = field(default_factory=list)  # (3 phases, LWF/ASF/RIA/restore)
    holdings: dict[int, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in HOLDING_STEPS})  # (8, 2)
    flag_rates: list[np.ndarray] = field(default_factory=list)  # (5 agents, proc/conn)
    red_counts: list[Counter] = field(default_factory=list)
    users: list[np.ndarray] = field(default_factory=list)  # (8,) per POPULATED subnet
    servers: list[np.ndarray] = field(default_factory=list)
    services_per_host: list[np.ndarray] = field(default_factory=list)  # (non-OZ mean, OZ mean)


def _instrument(episode_counts: list[Counter]):
    """Count red actions by outcome, dropped red actions and phishing attempts into episode_counts[-1]."""
    execute, intake, phish = RedTeam.execute, RedTeam.intake, RedTeam.phish

    def counted_execute(self, agent, action, topo, hosts, rng):
        ok = execute(self, agent, action, topo, hosts, rng)
        episode_counts[-1][f"{ACTION_NAMES[action.kind]}_{'TRUE' if ok else 'FALSE'}"] += 1
        return ok

    def counted_intake(self, topo, rng):
        due = intake(self, topo, rng)
        for _, action, runnable in due:
            episode_counts[-1][ACTION_NAMES[action.kind]] += 1
            if not runnable:
                episode_counts[-1][f"dropped_no_session_red_{ACTION_NAMES[action.kind]}"] += 1
        return due

    def counted_phish(self, host, topo):
        before = sum(len(a.sessions) for a in self.agents)
        phish(self, host, topo)
        episode_counts[-1]["phishing_calls"] += 1
        episode_counts[-1]["phishing_new_session"] += sum(len(a.sessions) for a in self.agents) > before

    return {"execute": counted_execute, "intake": counted_intake, "phish": counted_phish}


def simulate(policy: str, episodes: int) -> Episodes:
    out = Episodes()
    sleep = {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}
    with pytest.MonkeyPatch.context() as patch:
        for name, wrapper in _instrument(out.red_counts).items():
            patch.setattr(RedTeam, name, wrapper)
        for episode in range(episodes):
            out.red_counts.append(Counter())
            sim = make_cc4(seed=episode)
            sim.reset()
            rng = np.random.default_rng(10000 + episode)
            topo = sim.topology
            hosts_per_agent = np.array([sum(len(topo.subnet_hosts[s]) for s in subnets) for subnets in BLUE_SUBNETS])
            flags = np.zeros((len(cc4.AGENTS), 2))
            ret, phase_sums, terms = 0.0, np.zeros(3), np.zeros((3, 4))
            for k in range(1, 501):
                if policy == "sleep":
                    actions = sleep
                else:
                    actions = {a: int(rng.integers(sim.action_space(a).n)) for a in sorted(sim.agents)}
                obs, rewards, terminated, truncated, _ = sim.step(actions)
                for i, agent in enumerate(cc4.AGENTS):
                    vector = obs[agent]
                    for block in range(len(BLUE_SUBNETS[i])):
                        start = 1 + 59 * block
                        flags[i, 0] += vector[start + 27 : start + 43].sum()
                        flags[i, 1] += vector[start + 43 : start + 59].sum()
                if k in out.holdings:
                    held, root = sim.red.holdings(topo.num_hosts)
                    out.holdings[k].append(
                        np.array(
                            [[held[topo.subnet_hosts[s]].mean(), root[topo.subnet_hosts[s]].mean()] for s in POPULATED]
                        )
                    )
                if all(terminated[a] or truncated[a] for a in sim.agents):
                    break
                reward = float(np.mean(list(rewards.values())))
                phase = 0 if k <= 167 else 1 if k <= 334 else 2
                ret += reward
                phase_sums[phase] += reward
                t = sim.reward_terms
                terms[phase] += (t.local_work, t.access, t.impact, t.restore_cost)
            out.returns.append(ret)
            out.phase_sums.append(phase_sums)
            out.terms.append(terms)
            out.flag_rates.append(flags / (hosts_per_agent[:, None] * k))
            out.users.append(np.array([topo.is_user[topo.subnet_hosts[s]].sum() for s in POPULATED]))
            out.servers.append(np.array([(~topo.is_user[topo.subnet_hosts[s]]).sum() for s in POPULATED]))
            operational = np.isin(topo.subnet, (OZA, OZB))
            services = topo.services.sum(axis=1)
            out.services_per_host.append(np.array([services[~operational].mean(), services[operational].mean()]))
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
    assert_close(f"{name} return", sim.returns, ref["eval_return"]["mean"], Z_MAIN, ref["eval_return"]["sem"])
    # The spread must match too: a std far off means a wrong mechanism even with the right mean.
    assert 0.6 < np.std(sim.returns, ddof=1) / ref["eval_return"]["std"] < 1.6


def test_reward_by_phase(policy):
    name, sim, ref = policy
    sums = np.array(sim.phase_sums)
    for phase in range(3):
        stats = ref["phase_return"][str(phase)]
        assert_close(f"{name} phase {phase}", sums[:, phase], stats["mean"], Z_PHASE, stats["sem"])


def test_reward_decomposition(policy):
    name, sim, ref = policy
    terms = np.array(sim.terms)  # (episodes, phase, LWF/ASF/RIA/restore)
    for phase in range(3):
        parts = ref["reward_contribution_mean_per_episode"][str(phase)]
        for column, key in enumerate(("LWF", "ASF", "RIA")):
            if name == "sleep" and key == "ASF":
                assert (terms[:, phase, column] == 0).all(), "no blocks under sleep, so no green access fails"
                continue
            assert_close(f"{name} phase {phase} {key}", terms[:, phase, column], parts[key], Z_DETAIL)
    restore = terms[:, :, 3].sum(axis=1)
    if name == "sleep":
        assert (restore == 0).all()
    else:
        cost = ref["action_cost_sum"]
        assert_close(f"{name} restore cost", restore, cost["mean"], Z_DETAIL, cost["sem"])


def test_red_holdings(policy):
    name, sim, ref = policy
    for step in HOLDING_STEPS:
        held = np.array(sim.holdings[step])  # (episodes, subnet, any/root)
        for j, subnet in enumerate(POPULATED):
            expected = ref["red_holdings"][str(step)][SUBNET_NAMES[subnet]]
            for column, key in enumerate(("user_or_root_frac", "root_frac")):
                assert_close(
                    f"{name} k={step} {SUBNET_NAMES[subnet]} {key}", held[:, j, column], expected[key], Z_DETAIL
                )


def test_flag_rates(policy):
    name, sim, ref = policy
    rates = np.array(sim.flag_rates)
    for i, agent in enumerate(cc4.AGENTS):
        expected = list(ref["flag_rates_per_existing_host_step"][agent].values())  # proc, conn
        for column, kind in enumerate(("process", "connection")):
            assert_close(f"{name} {agent} {kind} flag", rates[:, i, column], expected[column], Z_DETAIL)


def test_red_activity(policy):
    """Red action counts (dropped stale-session actions included, as CybORG's counters include them) and phishing."""
    name, sim, ref = policy
    keys = ["ExploitRemoteService", "PrivilegeEscalate", "Impact", "DegradeServices", "DiscoverRemoteSystems"]
    keys += ["AggressiveServiceDiscovery", "StealthServiceDiscovery", "DiscoverDeception"]
    for key in keys:
        counts = [c[key] for c in sim.red_counts]
        assert_close(f"{name} {key}", counts, ref["red_executed_actions_mean_per_episode"][key], Z_DETAIL)
    for key in ("phishing_calls", "phishing_new_session"):
        counts = [c[key] for c in sim.red_counts]
        assert_close(f"{name} {key}", counts, ref["counters_mean_per_episode"][key], Z_DETAIL)
    if name == "sleep":  # nothing is ever dropped, so the TRUE/FALSE split is directly comparable
        for key in ("ExploitRemoteService_TRUE", "Impact_TRUE", "Impact_FALSE", "DegradeServices_TRUE"):
            counts = [c[key] for c in sim.red_counts]
            assert_close(f"{name} {key}", counts, ref["red_executed_actions_mean_per_episode"][key], Z_DETAIL)
        assert sum(c[k] for c in sim.red_counts for k in c if k.startswith("dropped")) == 0
        # As in CybORG: without blue interference every action but Exploit and Impact always succeeds.
        always = ("DiscoverRemoteSystems", "AggressiveServiceDiscovery", "StealthServiceDiscovery")
        always += ("DiscoverDeception", "PrivilegeEscalate", "DegradeServices")
        assert sum(c[f"{key}_FALSE"] for c in sim.red_counts for key in always) == 0
    else:
        for key in ("ExploitRemoteService", "DiscoverDeception", "Impact"):
            dropped = f"dropped_no_session_red_{key}"
            counts = [c[dropped] for c in sim.red_counts]
            assert_close(f"{name} {dropped}", counts, ref["counters_mean_per_episode"][dropped], Z_DETAIL)


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
