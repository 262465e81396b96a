"""Unit tests of our CC4 simulator's API and mechanics (docs/cc4.md); no CybORG needed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.agent.cc4_memory import ESCALATION_FILE, SHELL_FILE
from cage_sf.sim import make_cc4
from cage_sf.sim.blue import deploy_decoy
from cage_sf.sim.red import (
    ASD,
    EXP,
    EXPLOIT_OPTIONS,
    HTTP_RFI,
    HTTPS_RFI,
    IMP,
    SQL,
    SSD,
    SSH,
    RedAction,
)
from cage_sf.sim.red import KD as KNOWN_DISCOVERED
from cage_sf.sim.red import F as FOREIGN
from cage_sf.sim.red import S as SERVICES_KNOWN
from cage_sf.sim.red import U as USER_SHELL
from cage_sf.sim.rewards import RIA
from cage_sf.sim.state import P22, P25, P80, P443, P3390
from cage_sf.sim.topology import ADM, BLUE_SUBNETS, CON, NUM_SUBNETS, OFF, OZA, OZB, PAZ, RZA, RZB, SUBNET_NAMES

SLEEP = {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}
RESTORE_0 = cc4.action_commands(cc4.SMALL).index("Restore")  # agent 0, slot 0 = server_host_0 (always exists)
ALLOW_0 = cc4.action_commands(cc4.SMALL).index("AllowTrafficZone")
BLOCK_0 = cc4.action_commands(cc4.SMALL).index("BlockTrafficZone")
DECOY_0 = cc4.action_commands(cc4.SMALL).index("DeployDecoy")
REMOVE_0 = cc4.action_commands(cc4.SMALL).index("Remove")
ANALYSE_0 = cc4.action_commands(cc4.SMALL).index("Analyse")
RNG = np.random.default_rng(0)
BLOCKED_0 = slice(cc4.subnet_block_start(0) + cc4.BLOCKED_SOURCES, cc4.subnet_block_start(0) + cc4.COMMS_POLICY)


def received(agent: str) -> list[int]:
    """Where an agent's observation holds the messages of the other four."""
    return cc4.message_indices(cc4.agent_type(agent))


@pytest.fixture
def env():
    sim = make_cc4(seed=3)
    sim.reset()
    return sim


def run(sim, steps, actions=None):
    out = None
    for _ in range(steps):
        out = sim.step(actions or SLEEP)
    return out


# ------------------------------------------------------------------------------------------ API and spaces
def test_reset_shapes_spaces_and_masks(env):
    obs, info = env.reset(seed=5)
    assert env.agents == list(cc4.AGENTS)
    for agent in cc4.AGENTS:
        kind = cc4.agent_type(agent)
        assert env.action_space(agent).n == cc4.NUM_ACTIONS[kind]
        space = env.observation_space(agent)
        assert obs[agent].shape == (cc4.OBS_SIZE[kind],) and obs[agent].dtype == np.int64
        assert space.contains(obs[agent])
        assert list(space.nvec[:2]) == [3, 2] and set(space.nvec[1:]) == {2}
        mask = np.asarray(info[agent]["action_mask"])
        assert mask.shape == (cc4.NUM_ACTIONS[kind],) and mask.dtype == bool
        commands = cc4.action_commands(kind)
        always = [c not in cc4.HOST_COMMANDS for c in commands]
        assert mask[always].all()
        # Host slots: exactly the hosts of this episode, the same for every host command.
        slots = np.array([mask[i] for i, c in enumerate(commands) if c == "Analyse"])
        for command in cc4.HOST_COMMANDS:
            assert (np.array([mask[i] for i, c in enumerate(commands) if c == command]) == slots).all()
        expected = np.concatenate([env.topology.slot_host[s] >= 0 for s in BLUE_SUBNETS[cc4.AGENTS.index(agent)]])
        assert (slots == expected).all()
        # Reset observation: phase 0, own one-hot, no blocks, no flags, no messages.
        assert obs[agent][cc4.PHASE_INDEX] == 0 and obs[agent][received(agent)].sum() == 0


def test_masks_do_not_change_within_an_episode_and_are_read_only(env):
    _, info0 = env.reset(seed=8)
    _, _, _, _, info = env.step(SLEEP)
    for agent in cc4.AGENTS:
        assert (np.asarray(info[agent]["action_mask"]) == np.asarray(info0[agent]["action_mask"])).all()
        with pytest.raises(ValueError):
            info[agent]["action_mask"][0] = False


def test_action_labels_follow_cyborg_format(env):
    topo = env.topology
    cidr = r"\(10\.0\.\d{1,3}\.0/24\)"
    for i, agent in enumerate(cc4.AGENTS):
        labels = env.action_labels(agent)
        mask = env.action_mask(agent)
        commands = cc4.action_commands(cc4.agent_type(agent))
        assert len(labels) == len(commands)
        for label, command, valid in zip(labels, commands, mask, strict=True):
            if command in ("Sleep", "Monitor"):
                assert label == command
            elif command in ("AllowTrafficZone", "BlockTrafficZone"):
                assert re.fullmatch(rf"{command} [a-z_]+_subnet {cidr} <- [a-z_]+_subnet {cidr}", label)
            else:
                assert label.startswith("[Invalid] ") != valid
                assert re.fullmatch(rf"(\[Invalid\] )?{command} [a-z_]+_(server|user)_host_\d", label)
        first = BLUE_SUBNETS[i][0]
        assert labels[0] == f"Analyse {SUBNET_NAMES[first]}_server_host_0"
        hosts_per_agent = 16 * len(BLUE_SUBNETS[i])
        assert labels[hosts_per_agent - 1].endswith(f"{SUBNET_NAMES[BLUE_SUBNETS[i][-1]]}_user_host_9")
        # Traffic: for each own subnet (sorted), the 8 other subnets in sorted order.
        traffic = [label for label in labels if label.startswith("BlockTrafficZone")]
        pairs = [re.findall(r"([a-z_]+_subnet) \(([\d./]+)\)", label) for label in traffic]
        expected = [(d, s) for d in BLUE_SUBNETS[i] for s in range(NUM_SUBNETS) if s != d]
        assert [(SUBNET_NAMES.index(a), SUBNET_NAMES.index(b)) for (a, _), (b, _) in pairs] == expected
        assert all(c == topo.cidrs[SUBNET_NAMES.index(n)] for p in pairs for n, c in p)
    labels0 = env.action_labels("blue_agent_0")
    assert labels0[16] == "Monitor" and labels0[49] == "Sleep"
    assert (
        labels0[50].startswith("AllowTrafficZone restricted_zone_a_subnet (")
        and "<- admin_network_subnet" in labels0[50]
    )
    assert "<- restricted_zone_b_subnet" in labels0[65]
    labels4 = env.action_labels("blue_agent_4")
    assert labels4[48] == "Monitor" and labels4[145] == "Sleep"
    assert (
        labels4[170].startswith("BlockTrafficZone admin_network_subnet")
        and "<- contractor_network_subnet" in labels4[170]
    )
    assert labels4[186].startswith("BlockTrafficZone public_access_zone_subnet")
    assert labels4[194] == "DeployDecoy admin_network_subnet_server_host_0"


def test_cidrs_are_distinct_slash24s_of_10_0(env):
    assert len(set(env.topology.cidrs)) == NUM_SUBNETS
    assert all(re.fullmatch(r"10\.0\.\d{1,3}\.0/24", c) for c in env.topology.cidrs)


# ------------------------------------------------------------------------------------------ phases, termination
COMMS_TABLE_2_2 = {  # Table 2.2, columns ADM CON INT OFF OZA OZB PAZ RZA RZB
    (0, RZA): ("000001010", "011011011", "000001011"),
    (1, OZA): ("111111101", "111111111", "111111101"),
    (2, RZB): ("000010001", "000010011", "011011011"),
    (3, OZB): ("111111110", "111111110", "111111111"),
    (4, ADM): ("100011000",) * 3,
    (4, OFF): ("000111000",) * 3,
    (4, PAZ): ("000011100",) * 3,
}


def comms_bits(obs, agent, subnet):
    block = BLUE_SUBNETS[agent].index(subnet)
    start = cc4.subnet_block_start(block) + cc4.COMMS_POLICY
    return "".join(str(b) for b in obs[cc4.AGENTS[agent]][start : start + 9])


def test_phases_and_comms_policy_bits():
    sim = make_cc4(seed=0)
    obs, _ = sim.reset()
    seen = {}
    for k in range(1, cc4.EPISODE_STEPS):
        obs, *_ = sim.step(SLEEP)
        phase = obs["blue_agent_0"][0]
        assert all(o[0] == phase for o in obs.values())
        assert phase == (0 if k <= 167 else 1 if k <= 334 else 2)
        seen.setdefault(int(phase), obs)
    assert sorted(seen) == [0, 1, 2]
    for (agent, subnet), rows in COMMS_TABLE_2_2.items():
        for phase in range(3):
            assert comms_bits(seen[phase], agent, subnet) == rows[phase]
    # one-hot of the own subnet(s)
    for agent, subnets in enumerate(BLUE_SUBNETS):
        for block, subnet in enumerate(subnets):
            onehot = seen[0][cc4.AGENTS[agent]][cc4.subnet_block_start(block) + cc4.SUBNET_ONEHOT :][:NUM_SUBNETS]
            assert list(onehot) == [int(j == subnet) for j in range(NUM_SUBNETS)]


def test_termination_at_step_499_then_one_extra_step_then_error():
    sim = make_cc4(seed=1)
    sim.reset()
    for _ in range(cc4.EPISODE_STEPS - 2):
        _, _, terminated, truncated, _ = sim.step(SLEEP)
        assert not any(terminated.values()) and not any(truncated.values())
        assert sim.agents == list(cc4.AGENTS)
    obs, rewards, terminated, truncated, info = sim.step(SLEEP)
    assert all(terminated.values()) and all(truncated.values())
    assert set(terminated) == set(cc4.AGENTS) and sim.agents == []
    assert all(obs[a][0] == 2 for a in cc4.AGENTS)
    sim.step(SLEEP)  # the step after the last one is still possible, as in CybORG
    with pytest.raises(ValueError):
        sim.step(SLEEP)
    sim.reset()
    assert sim.agents == list(cc4.AGENTS)
    sim.step(SLEEP)


def test_short_episode_length_is_respected():
    sim = make_cc4(seed=1, steps=30)
    sim.reset()
    for _ in range(28):
        assert not any(sim.step(SLEEP)[2].values())
    assert all(sim.step(SLEEP)[2].values())


# ------------------------------------------------------------------------------------------ determinism
def rollout(seed, steps=120):
    sim = make_cc4(seed=seed)
    sim.reset()
    rng = np.random.default_rng(99)
    trace = []
    for _ in range(steps):
        actions = {a: int(rng.integers(sim.action_space(a).n)) for a in cc4.AGENTS}
        obs, rewards, *_ = sim.step(actions)
        trace.append((np.concatenate([obs[a] for a in cc4.AGENTS]), rewards["blue_agent_0"]))
    return trace


def test_same_seed_same_episode_and_different_seed_differs():
    a, b, c = rollout(4), rollout(4), rollout(5)
    assert all((x[0] == y[0]).all() and x[1] == y[1] for x, y in zip(a, b, strict=True))
    assert any((x[0] != y[0]).any() or x[1] != y[1] for x, y in zip(a, c, strict=True))


def test_reset_with_seed_reproduces_and_without_seed_continues():
    sim = make_cc4(seed=0)
    first = sim.reset(seed=11)[0]
    names = sim.topology.names
    again = sim.reset(seed=11)[0]
    assert sim.topology.names == names
    assert all((first[a] == again[a]).all() for a in cc4.AGENTS)
    draws = {make_cc4(seed=0).reset()[1]["blue_agent_4"]["action_mask"].tobytes() for _ in range(2)}
    assert len(draws) == 1
    topologies = set()
    for _ in range(6):
        sim.reset()
        topologies.add(sim.topology.names)
    assert len(topologies) > 1


# ------------------------------------------------------------------------------------------ team reward
def test_reward_is_the_same_for_all_agents_and_sums_its_terms(env):
    rng = np.random.default_rng(0)
    for _ in range(200):
        _, rewards, *_ = env.step({a: int(rng.integers(env.action_space(a).n)) for a in cc4.AGENTS})
        assert len(set(rewards.values())) == 1
        t = env.reward_terms
        assert rewards["blue_agent_0"] == pytest.approx(t.local_work + t.access + t.impact + t.restore_cost)


def test_restore_costs_one_per_submission_even_when_busy(env):
    actions = dict(SLEEP, blue_agent_0=RESTORE_0)
    _, rewards, *_ = env.step(actions)
    assert env.reward_terms.restore_cost == -1.0
    assert env.busy_agents() == {"blue_agent_0"}
    for _ in range(3):  # discarded (busy) but still charged
        env.step(actions)
        assert env.reward_terms.restore_cost == -1.0
        assert "blue_agent_0" in env.busy_agents()
    env.step(SLEEP)  # step 5: the Restore executes
    assert env.reward_terms.restore_cost == 0.0 and env.busy_agents() == set()
    both = dict(SLEEP, blue_agent_0=RESTORE_0, blue_agent_4=cc4.action_commands(cc4.LARGE).index("Restore"))
    env.step(both)
    assert env.reward_terms.restore_cost == -2.0


def test_masked_restore_is_a_free_sleep():
    sim = make_cc4(seed=0)
    _, info = sim.reset()
    mask = info["blue_agent_0"]["action_mask"]
    masked = [i for i in range(RESTORE_0, RESTORE_0 + 16) if not mask[i]]
    assert masked, "every episode has fewer than 10 users in some slot range"
    sim.step(dict(SLEEP, blue_agent_0=masked[0]))
    assert sim.reward_terms.restore_cost == 0.0 and sim.busy_agents() == set()


@pytest.mark.parametrize(("command", "duration"), sorted(cc4.DURATION.items()))
def test_durations_and_busy_rule(command, duration):
    sim = make_cc4(seed=2)
    sim.reset()
    index = cc4.action_commands(cc4.SMALL).index(command)
    busy_steps = 0
    for _ in range(duration):
        sim.step(dict(SLEEP, blue_agent_1=index))
        busy_steps += "blue_agent_1" in sim.busy_agents()
    assert busy_steps == duration - 1
    assert sim.busy_agents() == set()


def test_busy_agent_drops_new_action():
    sim = make_cc4(seed=2)
    obs, _ = sim.reset()
    sim.step(dict(SLEEP, blue_agent_0=cc4.action_commands(cc4.SMALL).index("Analyse")))  # busy for 1 more step
    obs, *_ = sim.step(dict(SLEEP, blue_agent_0=BLOCK_0))  # dropped
    assert obs["blue_agent_0"][BLOCKED_0].sum() == 0
    obs, *_ = sim.step(dict(SLEEP, blue_agent_0=BLOCK_0))
    assert obs["blue_agent_0"][BLOCKED_0][ADM] == 1  # ADM -> RZA now blocked


# ------------------------------------------------------------------------------------------ messages and bad input
def test_messages_delivered_same_step_in_sender_order(env):
    messages = {a: np.array([(i >> b) & 1 for b in range(8)]) for i, a in enumerate(cc4.AGENTS, start=1)}
    obs, *_ = env.step(SLEEP, messages=messages)
    for agent in cc4.AGENTS:
        expected = np.concatenate([messages[s] for s in cc4.AGENTS if s != agent])
        assert (obs[agent][received(agent)] == expected).all(), agent
    obs, *_ = env.step(SLEEP, messages={"blue_agent_3": np.ones(8, dtype=bool)})
    assert (obs["blue_agent_2"][received("blue_agent_2")] == np.r_[np.zeros(16), np.ones(8), np.zeros(8)]).all()
    assert (obs["blue_agent_3"][received("blue_agent_3")] == 0).all()
    obs, *_ = env.step(SLEEP)
    assert all((o[received(a)] == 0).all() for a, o in obs.items())


def test_bad_inputs_behave_like_cyborg(env):
    with pytest.raises(ValueError, match="shape"):
        env.step(SLEEP, messages={"blue_agent_0": np.zeros(5)})
    with pytest.raises(IndexError):
        env.step({"blue_agent_0": 82})
    with pytest.raises(IndexError):
        env.step({"blue_agent_4": -243})
    with pytest.raises(TypeError):
        env.step({"blue_agent_0": 3.0})
    with pytest.raises(KeyError):
        env.step({"red_agent_0": 1})
    assert env.step_count == 0  # rejected input leaves the episode untouched
    env.step({"blue_agent_0": np.int64(-1)})  # Python-list indexing: -1 is the last action (DeployDecoy user_9)
    assert env.step_count == 1
    env.step({})  # missing agents sleep
    assert env.busy_agents() == set()


# ------------------------------------------------------------------------------------------ blue effects
def test_block_and_allow_update_observation_and_green_access(env):
    obs, *_ = env.step(dict(SLEEP, blue_agent_0=BLOCK_0 + 1))  # RZA <- CON
    assert obs["blue_agent_0"][BLOCKED_0][CON] == 1 and env.hosts.blocks[RZA, CON]
    obs, *_ = env.step(dict(SLEEP, blue_agent_0=BLOCK_0 + 1))
    assert obs["blue_agent_0"][BLOCKED_0][CON] == 1
    obs, *_ = env.step(dict(SLEEP, blue_agent_0=ALLOW_0 + 1))
    assert obs["blue_agent_0"][BLOCKED_0].sum() == 0
    # Blocking every source into RZA makes green accesses between RZA and other subnets fail (ASF).
    for j in range(8):
        env.step(dict(SLEEP, blue_agent_0=BLOCK_0 + j))
    access_penalty, server_alerts = 0.0, 0
    for _ in range(30):
        obs, *_ = env.step(SLEEP)
        access_penalty += env.reward_terms.access
        server_alerts += obs["blue_agent_0"][44:50].sum()
    assert access_penalty < 0
    assert server_alerts > 5  # blocked accesses to RZA servers raise connection flags (N4)


def test_blocks_stop_red_scans_from_the_blocked_subnet():
    sim = make_cc4(seed=6)
    sim.reset()
    red = sim.red.agents[0]
    target = int(sim.topology.server0[RZA])
    sim.hosts.blocks[RZA, CON] = True
    assert not sim.red.execute(red, RedAction(ASD, target, 0, -1), sim.topology, sim.hosts, RNG)
    sim.hosts.blocks[RZA, CON] = False
    assert sim.red.execute(red, RedAction(ASD, target, 0, -1), sim.topology, sim.hosts, RNG)
    assert target in red.sessions[0].ports


def red_on(sim, host):
    return [(a.index, s) for a in sim.red.agents for s in a.sessions.values() if s.host == host]


def test_restore_removes_all_red_sessions_and_resets_services():
    sim = make_cc4(seed=0)
    sim.reset()
    run(sim, 250)  # under sleep, red owns most of RZA by now
    topo = sim.topology
    slots = topo.slot_host[RZA]
    slot = next(i for i in range(16) if slots[i] >= 0 and red_on(sim, slots[i]))
    host = int(slots[slot])
    sim.step(dict(SLEEP, blue_agent_0=RESTORE_0 + slot))
    run(sim, 3)
    assert "blue_agent_0" in sim.busy_agents()
    before = [id(s) for _, s in red_on(sim, host)]
    assert before
    sim.hosts.reliability[host] = 40
    sim.step(SLEEP)  # the Restore executes (before red acts in this step)
    after = {id(s) for a in sim.red.agents for s in a.sessions.values()}
    assert not after & set(before)
    assert (sim.hosts.reliability[host] == 100).all()
    assert (sim.hosts.active[host] == topo.services[host]).all()


def test_remove_kills_user_sessions_whose_pid_blue_saw():
    sim = make_cc4(seed=0)
    sim.reset()
    red, hosts = sim.red.agents[1], sim.hosts
    host = int(sim.topology.slot_host[RZA, 6])  # user_host_0
    sessions = {}
    for name, seen, kwargs in (
        ("detected", True, dict(abstract=False)),
        ("hidden", False, dict(abstract=True)),  # e.g. phishing: no event, so blue never read its PID
        ("root", True, dict(abstract=False, root=True)),
    ):
        pid = hosts.new_pid(host)
        if seen:
            hosts.suspicious[host].add(pid)
        sessions[name] = red.sessions[red.add_session(host, pid=pid, **kwargs)]
    alive = lambda name: any(s is sessions[name] for s in red.sessions.values())  # noqa: E731 - ids get re-keyed
    sim.step(dict(SLEEP, blue_agent_0=REMOVE_0 + 6))
    sim.step(SLEEP)
    assert alive("detected")
    sim.step(SLEEP)  # Remove takes 3 steps
    assert not alive("detected")
    assert alive("hidden") and alive("root")
    assert sessions["detected"].pid not in hosts.pids[host]  # its process is gone, its PID free again


def test_a_freed_pid_comes_back_and_remove_kills_its_undetected_shell():
    """CybORG's create_pid goes 1-9 above the highest live PID, so once Remove frees a detected shell's PID a later
    shell can get it; blue's list still holds that PID, so the next Remove kills the undetected shell [QUIRK]."""
    sim = make_cc4(seed=0)
    sim.reset()
    red, hosts, agent = sim.red, sim.hosts, sim.red.agents[1]
    host = int(sim.topology.slot_host[RZA, 7])  # user_host_1: no process started on it yet
    seen = hosts.new_pid(host)
    hosts.suspicious[host].add(seen)
    agent.add_session(host, abstract=False, pid=seen)
    red.remove(host, hosts)
    assert not agent.sessions and not hosts.pids[host]
    for _ in range(100):
        pid = hosts.new_pid(host)
        if pid == seen:
            break
        hosts.pids[host].discard(pid)
    assert pid == seen
    sid = agent.add_session(host, abstract=False, pid=pid)  # its exploit raised no event
    red.remove(host, hosts)
    assert sid not in agent.sessions


def test_remove_restarts_a_decoy_whose_pid_blue_saw_under_a_new_one():
    sim = make_cc4(seed=0)
    sim.reset()
    hosts, agent = sim.hosts, sim.red.agents[1]
    host = int(sim.topology.server0[RZA])
    deploy_decoy(hosts, host, RNG)
    (decoy_pid,) = hosts.pids[host]
    hosts.suspicious[host].add(decoy_pid)  # as if a detected shell had held that PID before the decoy
    root_pid = hosts.new_pid(host)
    agent.add_session(host, abstract=False, pid=root_pid, root=True)
    sim.red.remove(host, hosts)
    assert len(agent.sessions) == 1 and hosts.has_decoy(host)
    (restarted,) = hosts.pids[host] - {root_pid}
    assert restarted > root_pid  # killed and restarted above the highest live PID


def test_deploy_decoy_adds_services_and_always_alerts_scans():
    sim = make_cc4(seed=0)
    sim.reset()
    host = int(sim.topology.server0[RZA])
    before = sim.hosts.active[host].sum() + sim.hosts.vsftpd_decoys[host]
    for _ in range(2):
        sim.step(dict(SLEEP, blue_agent_0=DECOY_0))
    assert sim.hosts.has_decoy(host)
    assert sim.hosts.active[host].sum() + sim.hosts.vsftpd_decoys[host] > before
    red = sim.red.agents[0]
    for _ in range(20):  # the stealthy scan alerts only 25 % of the time, but a decoy always answers
        sim.hosts.conn_flag[:] = False
        assert sim.red.execute(red, RedAction(SSD, host, 0, -1), sim.topology, sim.hosts, RNG)
        assert sim.hosts.conn_flag[host]


def test_flags_reflect_this_steps_events_only():
    sim = make_cc4(seed=0)
    sim.reset()
    topo = sim.topology
    seen_flags = 0
    for _ in range(150):
        obs, *_ = sim.step(SLEEP)
        for i, agent in enumerate(cc4.AGENTS):
            for block, subnet in enumerate(BLUE_SUBNETS[i]):
                hosts = topo.slot_host[subnet]
                start = cc4.subnet_block_start(block)
                proc = np.where(hosts >= 0, sim.hosts.proc_flag[np.maximum(hosts, 0)], False)
                conn = np.where(hosts >= 0, sim.hosts.conn_flag[np.maximum(hosts, 0)], False)
                assert (obs[agent][start + cc4.PROCESS_FLAGS :][: cc4.SLOTS_PER_SUBNET] == proc).all()
                assert (obs[agent][start + cc4.CONNECTION_FLAGS :][: cc4.SLOTS_PER_SUBNET] == conn).all()
                seen_flags += proc.sum() + conn.sum()
    assert seen_flags > 0


# ------------------------------------------------------------------------------------------ red mechanics
def test_red_agent_0_starts_alone_with_a_contractor_foothold(env):
    agents = env.red.agents
    assert agents[0].active and len(agents[0].sessions) == 1
    assert env.topology.subnet[agents[0].sessions[0].host] == CON
    assert not any(a.active or a.sessions for a in agents[1:])


def test_foreign_sessions_are_handed_to_the_zone_owner():
    sim = make_cc4(seed=0)
    sim.reset()
    host = int(sim.topology.server0[RZA])
    sim.red.agents[0].add_session(host, abstract=False, pid=sim.hosts.new_pid(host))
    sim.red.end_of_step(RNG)
    assert not any(s.host == host for s in sim.red.agents[0].sessions.values())
    owner = sim.red.agents[1]
    assert owner.active and any(s.host == host and s.abstract for s in owner.sessions.values())


def test_red_spreads_and_degrades_under_sleep():
    sim = make_cc4(seed=7)
    sim.reset()
    lwf = 0.0
    for _ in range(400):
        sim.step(SLEEP)
        lwf += sim.reward_terms.local_work
    held, root = sim.red.holdings(sim.topology.num_hosts)
    assert held.mean() > 0.4 and root.sum() > 5
    assert sum(a.active for a in sim.red.agents) >= 4
    assert lwf < -100


@pytest.mark.parametrize(
    ("ports", "options"),
    [  # docs/cc4.md §5.6 step 4: with two or more applicable exploits the heaviest is dropped [BUG]
        (P22, {SSH}),
        (P22 | P80, {SSH}),
        (P22 | P25 | P3390, {SSH}),
        (P22 | P80 | P3390, {SSH, HTTP_RFI}),
        (P22 | P25 | P80, {SSH, HTTP_RFI}),
        (P22 | P443 | P3390, {SSH, HTTPS_RFI}),
        (P22 | P25 | P80 | P3390, {SSH, HTTP_RFI, SQL}),
        (P22 | P80 | P443 | P3390, {SSH, HTTP_RFI, HTTPS_RFI}),
        (P22 | P25 | P80 | P443 | P3390, {SSH, HTTP_RFI, HTTPS_RFI, SQL}),
    ],
)
def test_exploit_selector_drops_the_heaviest_option(ports, options):
    assert set(EXPLOIT_OPTIONS[ports]) == options


def test_fsm_transitions_foreign_shells_and_session_loss():
    sim = make_cc4(seed=0)
    sim.reset()
    topo, red = sim.topology, sim.red.agents[1]  # owns RZA
    own, foreign, lost = int(topo.server0[RZA]), int(topo.server0[OZA]), int(topo.slot_host[RZA, 6])
    red.fsm_step = 5
    red.host_states.update({own: SERVICES_KNOWN, foreign: SERVICES_KNOWN, lost: USER_SHELL})
    red.add_session(own, abstract=False, pid=sim.hosts.new_pid(own))
    for target, expected in ((own, USER_SHELL), (foreign, FOREIGN)):
        red.result = (RedAction(EXP, target, 0, -1), True)
        red.dirty = True
        red.consult(topo, np.random.default_rng(0))
        assert red.host_states[target] == expected
    assert red.host_states[lost] == KNOWN_DISCOVERED  # no session there any more


def test_impact_is_penalised_even_when_it_fails():
    sim = make_cc4(seed=0)
    sim.reset()
    red = sim.red.agents[1]
    host = int(sim.topology.server0[RZA])  # RZA hosts run no OTService, so this Impact fails
    sid = red.add_session(host, abstract=True, pid=sim.hosts.new_pid(host), root=True)
    red.active = True
    red.known_ids.append(sid)
    red.pending, red.remaining = RedAction(IMP, host, sid, -1), 1
    sim.step(SLEEP)
    assert sim.reward_terms.impact == RIA[0, RZA] == -1
    assert red.result == (RedAction(IMP, host, sid, -1), False)


# ------------------------------------------------------------------------------------------ against real CybORG
def _label_shape(label: str) -> str:
    """A label with its episode-specific parts removed: CIDRs and the [Invalid] marker."""
    return re.sub(r" \(10\.0\.\d+\.0/24\)", "", label.removeprefix("[Invalid] "))


@pytest.mark.cyborg
def test_index_spaces_labels_and_observation_layout_match_cyborg():
    from cage_sf.backends.cyborg import CybORGBackend

    real = CybORGBackend(seed=0)
    real_obs, real_info = real.reset(seed=0)
    sim = make_cc4(seed=0)
    sim_obs, _ = sim.reset()
    for agent in cc4.AGENTS:
        assert sim.action_space(agent) == real.action_space(agent)
        assert sim.observation_space(agent) == real.observation_space(agent)
        real_labels, real_mask = real.action_labels(agent), real_info[agent]["action_mask"]
        assert [_label_shape(x) for x in sim.action_labels(agent)] == [_label_shape(x) for x in real_labels]
        assert [not x.startswith("[Invalid]") for x in real_labels] == list(real_mask)
        assert real_obs[agent].shape == sim_obs[agent].shape and real_obs[agent].dtype == sim_obs[agent].dtype
        # Episode-independent parts of the reset vector: phase, one-hots, blocks, comms bits, messages.
        kind = cc4.agent_type(agent)
        facts = [cc4.subnet_block_start(b) + np.arange(cc4.SUBNET_FACTS) for b in range(cc4.SUBNETS[kind])]
        fixed = np.r_[cc4.PHASE_INDEX, np.concatenate(facts)]
        assert (real_obs[agent][fixed] == sim_obs[agent][fixed]).all()
        assert (real_obs[agent][received(agent)] == sim_obs[agent][received(agent)]).all()


def test_red_leaves_files_that_analyse_finds_and_restore_wipes():
    """Exploits leave cmd.sh and escalations escalate.sh (density 0.9): every host where red holds a shell it
    exploited or a root session carries one, and a root session an escalation's; a finished Analyse reports them
    on its slot only, the escalation's as such; Restore wipes them."""
    sim = make_cc4(seed=0)
    sim.reset()
    rng = np.random.default_rng(1)
    for _ in range(200):  # random blue actions: Restores and Removes keep changing red's holdings
        sim.step({a: int(rng.choice(np.flatnonzero(sim.action_mask(a)))) for a in sim.agents})
        for agent in sim.red.agents:
            for session in agent.sessions.values():
                if session.root or not session.abstract:
                    assert sim.hosts.malware[session.host]
                assert sim.hosts.escalation[session.host] or not session.root
    run(sim, 60)
    slots = sim.topology.slot_host[RZA]
    infected = next(i for i in range(16) if slots[i] >= 0 and sim.hosts.malware[slots[i]])
    clean = next(i for i in range(16) if slots[i] >= 0 and not sim.hosts.malware[slots[i]])
    run(sim, 5)  # whatever blue_agent_0 started has finished
    sim.step(dict(SLEEP, blue_agent_0=ANALYSE_0 + infected))
    assert not sim.analysis("blue_agent_0").any()  # Analyse takes 2 steps
    sim.step(SLEEP)
    assert np.flatnonzero(sim.analysis("blue_agent_0")).tolist() == [infected]
    escalated = sim.hosts.escalation[slots[infected]]
    assert sim.analysis("blue_agent_0")[infected] == (ESCALATION_FILE if escalated else SHELL_FILE)
    sim.step(dict(SLEEP, blue_agent_0=ANALYSE_0 + clean))
    sim.step(SLEEP)
    assert not sim.analysis("blue_agent_0").any()
    sim.step(dict(SLEEP, blue_agent_0=RESTORE_0 + infected))
    run(sim, 4)
    assert not sim.hosts.malware[slots[infected]] and not sim.hosts.escalation[slots[infected]]


def test_the_privileged_state_holds_reds_highest_privilege_the_decoys_and_the_files_per_slot():
    """What the privileged critic and the oracle read, in the observation's slot order: a root session outranks a
    user session on the same host, whichever red agent holds them."""
    sim = make_cc4(seed=0)
    sim.reset()
    topo, hosts = sim.topology, sim.hosts
    shared, user_only, decoyed = int(topo.server0[RZA]), int(topo.server0[RZB]), int(topo.server0[OZA])
    for agent in sim.red.agents:
        agent.sessions.clear()
    sim.red.agents[1].add_session(shared, abstract=False, pid=hosts.new_pid(shared), root=True)
    sim.red.agents[2].add_session(shared, abstract=False, pid=hosts.new_pid(shared))
    sim.red.agents[2].add_session(user_only, abstract=False, pid=hosts.new_pid(user_only))
    deploy_decoy(hosts, decoyed, RNG)
    hosts.malware[user_only] = True

    state = sim.privileged_state()
    slots = state[: NUM_SUBNETS * cc4.SLOTS_PER_SUBNET * 3].reshape(NUM_SUBNETS, cc4.SLOTS_PER_SUBNET, 3)
    at = {host: slots[tuple(np.argwhere(topo.slot_host == host)[0])] for host in (shared, user_only, decoyed)}
    assert at[shared].tolist() == [1.0, 0.0, 0.0]
    assert at[user_only].tolist() == [0.5, 0.0, 1.0]
    assert at[decoyed].tolist() == [0.0, 1.0, 0.0]
    assert slots[..., 0].sum() == 1.5 and slots[..., 1].sum() == 1.0 and slots[..., 2].sum() == 1.0
