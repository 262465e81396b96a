"""Real CybORG CC4 behind our interface (skipped when CybORG is not installed)."""

from statistics import mean

import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.adapter import CC4SampleFactoryEnv, CC4VectorEnv
from cage_sf.agent.cc4_memory import ESCALATION_FILE, SHELL_FILE
from cage_sf.backends.cyborg import CybORGBackend

pytestmark = pytest.mark.cyborg

SLEEP = {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}


def evaluation_py_return(seed: int) -> float:
    """The loop of CybORG's Evaluation/evaluation.py for one episode of an all-Sleep policy."""
    env = CybORGBackend(seed=seed)
    env.reset(seed=seed)
    rewards = []
    for _ in range(cc4.EPISODE_STEPS):
        actions = {agent: SLEEP[agent] for agent in env.agents}
        _, reward, terminated, truncated, _ = env.step(actions)
        if all(terminated.get(a, False) or truncated.get(a, False) for a in env.agents):
            break
        rewards.append(mean(reward.values()))
    return sum(rewards)


def test_adapter_return_counts_like_evaluation_py():
    seed = 7
    env = CC4SampleFactoryEnv(lambda: CybORGBackend(seed=seed), step_timeout_s=60)
    env.reset(seed=seed)
    for _ in range(cc4.EPISODE_STEPS - 1):
        *_, infos = env.step([SLEEP[a] for a in cc4.AGENTS])
    stats = infos[0]["episode_extra_stats"]
    expected = evaluation_py_return(seed)
    assert expected < 0 and stats["cc4/eval_return"] == pytest.approx(expected)
    assert sum(stats[f"cc4/reward_phase_{p}"] for p in range(3)) == pytest.approx(expected)


def test_busy_agent_may_only_sleep_on_cyborg():
    env = CC4VectorEnv(lambda: CybORGBackend(seed=1), num_envs=1, step_timeout_s=60)
    env.reset(seed=1)
    actions = [SLEEP[a] for a in cc4.AGENTS]
    actions[4] = 97  # Restore(ADM server_host_0): 5 steps
    only_sleep = []
    for _ in range(5):
        obs = env.step(actions)[0]
        only_sleep.append(obs["valid_actions"][4].sum() == 1)
        assert env._backends[0].busy_agents() == ({"blue_agent_4"} if only_sleep[-1] else set())
    assert only_sleep == [True, True, True, True, False]


def test_messages_reach_the_same_observation_slots_as_in_our_simulator():
    """The same messages through real CybORG and our simulator: every agent sees the same 32 message bits."""
    from cage_sf.sim import make_cc4

    rng = np.random.default_rng(0)
    cyborg, sim = CybORGBackend(seed=2), make_cc4(seed=2)
    cyborg.reset(seed=2)
    sim.reset(seed=2)
    for _ in range(3):
        messages = {agent: rng.integers(0, 2, cc4.MESSAGE_LENGTH) for agent in cc4.AGENTS}
        seen = [backend.step(dict(SLEEP), messages)[0] for backend in (cyborg, sim)]
        for agent in cc4.AGENTS:
            slots = cc4.agent_layout(cc4.agent_type(agent))["messages"]
            expected = np.concatenate([messages[sender] for sender in cc4.AGENTS if sender != agent])
            np.testing.assert_array_equal(np.asarray(seen[0][agent])[slots], expected)
            np.testing.assert_array_equal(np.asarray(seen[1][agent])[slots], expected)


def test_analysis_reports_the_files_red_left_as_a_submission_reads_them():
    """blue_agent_4 analyses its hosts in turn on real CybORG: after each finished Analyse, `analysis` marks
    exactly the analysed slot when CybORG's state holds one of red's files there (density 0.9), an escalation's
    (escalate.sh) as such, and the exported
    agents' reader, given CybORG's own wrapper as in evaluation.py, reads the same from its dictionary observation."""
    from CybORG.Agents.Wrappers.EnterpriseMAE import EnterpriseMAE

    from cage_sf.agent.cc4_agent import analysis

    env = CybORGBackend(seed=2)
    env.reset(seed=2)
    cyborg, agent = env._cyborg, "blue_agent_4"
    official = EnterpriseMAE(cyborg)
    for _ in range(60):  # red spreads under Sleep
        env.step(SLEEP)
    hosts, labels = cyborg.environment_controller.state.hosts, env.action_labels(agent)
    found = escalations = 0
    for slot in range(cc4.HOST_SLOTS[cc4.LARGE]):
        subnet = ("admin_network_subnet", "office_network_subnet", "public_access_zone_subnet")[slot // 16]
        kind, number = ("server", slot % 16) if slot % 16 < 6 else ("user", slot % 16 - 6)
        hostname = f"{subnet}_{kind}_host_{number}"
        if hostname not in hosts:
            continue
        env.step(dict(SLEEP, **{agent: labels.index(f"Analyse {hostname}")}))
        env.step(SLEEP)
        red_files = [f.name for f in hosts[hostname].files if f.density >= 0.9]
        code = ESCALATION_FILE if "escalate.sh" in red_files else SHELL_FILE if red_files else 0
        expected = np.where(np.arange(48) == slot, code, 0)
        assert (env.analysis(agent) == expected).all(), hostname
        assert (analysis(official, agent, 48) == expected).all(), hostname
        found += bool(red_files)
        escalations += code == ESCALATION_FILE
    assert found > 0 and escalations > 0
