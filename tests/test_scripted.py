import numpy as np
import pytest

from cage_sf import cc4, scripted
from cage_sf.agent.cc4_memory import ESCALATION_FILE, SHELL_FILE
from cage_sf.backends import make_backend
from cage_sf.errors import UsageError
from cage_sf.scripted import load_policy, policy_returns
from cage_sf.scripted_submission import scripted_agents, write_submission
from cage_sf.sim.env import PRIVILEGED_STATE_SIZE
from cage_sf.sim.topology import ADM, NUM_SUBNETS, PAZ, RZA
from cage_sf.stats import mean_and_sem

SLEEP = {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}


@pytest.fixture
def episode_start():
    env = make_backend("synthetic", seed=0)
    obs, info = env.reset(seed=0)
    return obs, {a: np.asarray(info[a]["action_mask"]) for a in cc4.AGENTS}


def quiet_obs(flagged: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Observations with no flags but a malicious-process flag on host slot `flagged[agent]`."""
    obs = {a: np.zeros(cc4.OBS_SIZE[cc4.agent_type(a)], np.int64) for a in cc4.AGENTS}
    for agent, slot in (flagged or {}).items():
        block, index = divmod(slot, 16)
        obs[agent][1 + block * cc4.SUBNET_BLOCK + cc4.PROCESS_FLAGS + index] = 1
    return obs


def test_random_valid_picks_only_valid_actions(episode_start):
    obs, masks = episode_start
    act, rng = load_policy("random-valid")(), np.random.default_rng(0)
    chosen = {a: {act(obs, masks, rng)[a] for _ in range(300)} for a in cc4.AGENTS}
    for agent in cc4.AGENTS:
        assert masks[agent][sorted(chosen[agent])].all() and len(chosen[agent]) > 20


def test_random_draws_from_the_whole_space_like_the_reference(episode_start):
    obs, masks = episode_start
    act = load_policy("random")()
    first = act(obs, masks, np.random.default_rng(10000))
    rng = np.random.default_rng(10000)
    assert first == {a: int(rng.integers(cc4.NUM_ACTIONS[cc4.agent_type(a)])) for a in sorted(cc4.AGENTS)}


def test_remove_then_restore_and_never_submit_while_busy(episode_start):
    _, masks = episode_start
    act = load_policy("remove-restore")()
    remove, restore = cc4.action_index(0, "Remove", 3), cc4.action_index(0, "Restore", 3)
    flagged = quiet_obs({"blue_agent_0": 3})
    assert act(flagged, masks, None)["blue_agent_0"] == remove
    assert [act(flagged, masks, None)["blue_agent_0"] for _ in range(2)] == [SLEEP["blue_agent_0"]] * 2  # Remove: 3
    assert act(flagged, masks, None)["blue_agent_0"] == restore
    assert act(quiet_obs(), masks, None) == SLEEP | {"blue_agent_0": SLEEP["blue_agent_0"]}


def test_restore_decoy_deploys_decoys_on_servers_then_restores(episode_start):
    _, masks = episode_start
    act = load_policy("restore-decoy")()
    first = act(quiet_obs(), masks, None)
    assert first["blue_agent_4"] == cc4.action_index(1, "DeployDecoy", 0)  # ADM server_host_0 always exists
    act(quiet_obs(), masks, None)  # DeployDecoy takes 2 steps
    restore = act(quiet_obs({"blue_agent_4": 40}), masks, None)["blue_agent_4"]
    assert restore == cc4.action_index(1, "Restore", 40)


def test_module_function_and_class_policies():
    assert load_policy("cage_sf.scripted:sleep")()({}, {}, None) == SLEEP
    assert type(load_policy("cage_sf.scripted:RemoveRestore")()).__name__ == "RemoveRestore"


@pytest.mark.parametrize(("name", "message"), [("nope", "unknown policy"), ("os:nope", "cannot load policy")])
def test_bad_policy_names(name, message):
    with pytest.raises(UsageError, match=message):
        load_policy(name)


def test_analyse_restore_analyses_in_turn_and_restores_what_it_found_or_saw_flagged(episode_start):
    _, masks = episode_start
    act, none = load_policy("analyse-restore")(), {a: np.zeros(cc4.HOST_SLOTS[cc4.agent_type(a)], bool) for a in SLEEP}
    analyse, restore = cc4.action_index(0, "Analyse"), cc4.action_index(0, "Restore")
    slots = np.flatnonzero(masks["blue_agent_0"][analyse : analyse + 16])
    chosen = [act(quiet_obs(), masks, None, none)["blue_agent_0"] for _ in range(4)]
    assert chosen == [analyse + slots[0], SLEEP["blue_agent_0"], analyse + slots[1], SLEEP["blue_agent_0"]]
    found = dict(none, blue_agent_0=np.arange(16) == slots[1])  # the second Analyse came back with red's files
    assert act(quiet_obs(), masks, None, found)["blue_agent_0"] == restore + slots[1]
    [act(quiet_obs(), masks, None, none) for _ in range(4)]  # Restore takes 5 steps
    assert act(quiet_obs({"blue_agent_0": 5}), masks, None, none)["blue_agent_0"] == restore + 5
    [act(quiet_obs(), masks, None, none) for _ in range(4)]
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + slots[2]  # back to its round


def test_remove_analyse_restore_removes_a_flagged_shell_checks_it_and_restores_only_what_remove_cannot_clear(
    episode_start,
):
    _, masks = episode_start
    act = load_policy("remove-analyse-restore")()
    none = {a: np.zeros(cc4.HOST_SLOTS[cc4.agent_type(a)], np.int8) for a in SLEEP}

    def found(slot, code):
        return dict(none, blue_agent_0=np.where(np.arange(16) == slot, code, 0).astype(np.int8))

    analyse, remove, restore = (cc4.action_index(0, c) for c in ("Analyse", "Remove", "Restore"))
    slots = np.flatnonzero(masks["blue_agent_0"][analyse : analyse + 16])
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + slots[0]  # its round, as analyse-restore
    act(quiet_obs(), masks, None, none)  # Analyse takes 2 steps
    assert act(quiet_obs({"blue_agent_0": 5}), masks, None, none)["blue_agent_0"] == remove + 5  # free, not Restore
    [act(quiet_obs(), masks, None, none) for _ in range(2)]  # Remove takes 3 steps
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + 5  # then the removed host is checked
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == SLEEP["blue_agent_0"]  # Analyse takes 2 steps
    # the exploit's file outlives the shell the Remove killed: no Restore, the round goes on
    assert act(quiet_obs(), masks, None, found(5, SHELL_FILE))["blue_agent_0"] == analyse + slots[1]
    act(quiet_obs(), masks, None, none)
    # an exploit's file on a host never Removed (a shell nobody saw) is Restored
    unseen = int(slots[2]) if slots[2] != 5 else int(slots[3])
    assert act(quiet_obs(), masks, None, found(unseen, SHELL_FILE))["blue_agent_0"] == restore + unseen
    [act(quiet_obs(), masks, None, none) for _ in range(4)]  # Restore takes 5 steps
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] != restore + 5  # its round
    # an escalation's file on the Removed host: red is root there, which only a Restore clears
    act(quiet_obs(), masks, None, found(5, ESCALATION_FILE))
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == restore + 5


def test_remove_analyse_restore_acts_on_flags_that_came_while_it_was_busy(episode_start):
    """A flag shows for one step: one seen mid-Analyse is Removed at the next decision, and once only."""
    _, masks = episode_start
    act = load_policy("remove-analyse-restore")()
    none = {a: np.zeros(cc4.HOST_SLOTS[cc4.agent_type(a)], np.int8) for a in SLEEP}
    analyse, remove = cc4.action_index(0, "Analyse"), cc4.action_index(0, "Remove")
    slots = np.flatnonzero(masks["blue_agent_0"][analyse : analyse + 16])
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + slots[0]
    assert act(quiet_obs({"blue_agent_0": 7}), masks, None, none)["blue_agent_0"] == SLEEP["blue_agent_0"]  # busy
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == remove + 7
    [act(quiet_obs(), masks, None, none) for _ in range(2)]  # Remove takes 3 steps
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + 7  # its check, then its round
    act(quiet_obs(), masks, None, none)
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + slots[1]


def test_remove_analyse_restores_round_takes_the_host_analysed_longest_ago_checks_included(episode_start):
    """A host just checked after its Remove is not analysed again in the round: the round skips it once and
    comes back to it last (a fixed round would analyse it twice in a row; the agent's memory could not show that)."""
    _, masks = episode_start
    act = load_policy("remove-analyse-restore")()
    none = {a: np.zeros(cc4.HOST_SLOTS[cc4.agent_type(a)], np.int8) for a in SLEEP}
    analyse, remove = cc4.action_index(0, "Analyse"), cc4.action_index(0, "Remove")
    slots = np.flatnonzero(masks["blue_agent_0"][analyse : analyse + 16]).tolist()
    assert len(slots) >= 3
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + slots[0]
    act(quiet_obs(), masks, None, none)
    assert act(quiet_obs({"blue_agent_0": slots[1]}), masks, None, none)["blue_agent_0"] == remove + slots[1]
    [act(quiet_obs(), masks, None, none) for _ in range(2)]
    assert act(quiet_obs(), masks, None, none)["blue_agent_0"] == analyse + slots[1]  # the check
    chosen = []
    while len(chosen) < len(slots):
        action = act(quiet_obs(), masks, None, none)["blue_agent_0"]
        if action != SLEEP["blue_agent_0"]:
            chosen.append(action - analyse)
    assert chosen == [*slots[2:], slots[0], slots[1]]


def test_a_policy_with_the_wrong_arguments_is_refused():
    with pytest.raises(UsageError, match=r"must take \(observations, masks, rng, analysis\)"):
        load_policy("cage_sf.scripted:process_flags")


# ---- the oracle: a defender that sees the true state -----------------------------------------------------------


def true_state(held: dict[tuple[int, int], float], decoys: bool = True) -> np.ndarray:
    """A `CC4Sim.privileged_state` with red's privilege at (subnet, slot) and, with `decoys`, a decoy on every slot."""
    per_slot = np.zeros((NUM_SUBNETS, cc4.SLOTS_PER_SUBNET, 3), np.float32)
    per_slot[..., 1] = decoys
    for (subnet, slot), privilege in held.items():
        per_slot[subnet, slot, 0] = privilege
    return np.concatenate([per_slot.ravel(), np.zeros(PRIVILEGED_STATE_SIZE - per_slot.size, np.float32)])


def test_the_oracle_restores_root_removes_a_flagged_shell_leaves_other_footholds_and_decoys_bare_hosts(episode_start):
    _, masks = episode_start
    act, small, large = load_policy("oracle")(), cc4.SMALL, cc4.LARGE
    first = act(quiet_obs(), masks, None, None, state=true_state({}, decoys=False))
    assert first == {a: cc4.action_index(cc4.agent_type(a), "DeployDecoy", 0) for a in cc4.AGENTS}  # server_host_0
    assert act(quiet_obs(), masks, None, None, state=true_state({})) == SLEEP  # DeployDecoy takes 2 steps
    # blue_agent_0 (RZA): root on slot 9, an exploit's shell (flagged) on slot 3; blue_agent_4: root on ADM
    # user_host_1 (slot 7), an unflagged user foothold (phishing) on PAZ server_host_2 (slot 34)
    held = {(RZA, 9): 1.0, (RZA, 3): 0.5, (ADM, 7): 1.0, (PAZ, 2): 0.5}
    chosen = act(quiet_obs({"blue_agent_0": 3}), masks, None, None, state=true_state(held))
    assert chosen["blue_agent_0"] == cc4.action_index(small, "Restore", 9)  # root before a user shell
    assert chosen["blue_agent_4"] == cc4.action_index(large, "Restore", 7)  # root, not the server's user foothold
    del held[RZA, 9], held[ADM, 7]
    for _ in range(4):  # Restore takes 5 steps
        assert act(quiet_obs(), masks, None, None, state=true_state(held))["blue_agent_0"] == SLEEP["blue_agent_0"]
    after_restore = act(quiet_obs(), masks, None, None, state=true_state(held))
    assert after_restore["blue_agent_0"] == cc4.action_index(small, "Remove", 3)  # the flag came while it was busy
    assert after_restore["blue_agent_4"] == SLEEP["blue_agent_4"]  # a user foothold: no Restore until it escalates
    for _ in range(2):  # Remove takes 3 steps
        act(quiet_obs(), masks, None, None, state=true_state(held))
    missed = act(quiet_obs(), masks, None, None, state=true_state(held))  # red is still there: Remove missed it
    assert missed["blue_agent_0"] == SLEEP["blue_agent_0"]  # one Remove per flag; the shell waits for its escalation
    held[RZA, 3] = 1.0
    assert act(quiet_obs(), masks, None, None, state=true_state(held))["blue_agent_0"] == cc4.action_index(
        small, "Restore", 3
    )


def test_the_oracle_beats_analyse_restore_on_the_simulator_by_several_sem():
    """A ceiling worth its name: on these 16 paired simulator episodes the oracle is 56 ± 14 better. Against the
    best script (remove-analyse-restore) it is +12.6 ± 2.7 on 300 (docs/experiments.md, "How far a perfect view
    goes"): too close for a short test to tell apart."""
    oracle = np.array(policy_returns("oracle", 16, seed=0))
    scripted = np.array(policy_returns("analyse-restore", 16, seed=0))
    gain, sem = mean_and_sem(list(oracle - scripted))
    assert gain > 3 * sem > 0, (gain, sem)


def test_the_oracle_refuses_a_backend_without_the_true_state():
    oracle = load_policy("oracle")()
    with pytest.raises(UsageError, match=r"only our simulator gives \(--backend=sim\), not SyntheticBackend"):
        scripted.true_state(oracle, make_backend("synthetic", seed=0))
    with pytest.raises(UsageError, match="reads the true state") as refused:
        oracle(quiet_obs(), {}, None, None)  # a loop that passes no state, as on CybORG
    assert "\n" not in str(refused.value)
    assert scripted.true_state(load_policy("analyse-restore")(), make_backend("synthetic", seed=0)) == {}


def test_the_oracle_is_never_a_cyborg_submission(tmp_path):
    with pytest.raises(UsageError, match="CybORG's blue agents cannot see: it cannot be a submission"):
        write_submission(tmp_path / "oracle", "oracle")
    with pytest.raises(UsageError, match="cannot be a submission"):
        scripted_agents("oracle")
    assert not (tmp_path / "oracle").exists()


def test_the_oracle_teaches_through_imitation_on_the_simulator():
    """`--imitate=oracle`: the teacher gets the true state, the students' inputs stay the blue view."""
    from cage_sf.adapter import observation_space
    from cage_sf.imitation import NUM_ENVS, demonstrate

    demos = demonstrate("oracle", NUM_ENVS, gamma=0.99, reward_scale=0.02, steps=60)
    small = demos.actions[demos.free & (demos.inputs["agent_type"][:, 0] == cc4.SMALL)]
    commands = {cc4.action_commands(cc4.SMALL)[a] for a in small.tolist()}
    assert {"Restore", "DeployDecoy"} <= commands
    assert set(demos.inputs) == set(observation_space().spaces)  # no "state" without --privileged_critic
