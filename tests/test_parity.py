import json

import numpy as np
import pytest

from cage_sf import cc4, parity
from cage_sf.parity import compare, format_table, record_episode


def test_sim_episode_statistics_are_consistent():
    stats = record_episode("sim", "random", seed=3)
    phases = [stats[f"phase{p}/sum"] for p in range(3)]
    assert stats["return"] == pytest.approx(sum(phases)) and stats["return"] < 0
    for p in range(3):
        terms = sum(stats[f"phase{p}/{t}"] for t in parity.TERMS)
        assert terms == pytest.approx(phases[p])
    assert stats["phase0/restore"] < 0  # the random policy submits Restore often
    assert all(0 <= stats[f"holdings@{k}/contractor_network_subnet/any"] <= 1 for k in parity.HOLDING_STEPS)
    for name in parity.DEFENDED:
        assert 1 <= stats[f"topology/{name}/servers"] <= 6 and 3 <= stats[f"topology/{name}/users"] <= 10
        assert 0 <= stats[f"flags/process/{name}"] < 0.5
    for name in parity.RED_SUCCESSES:
        assert 0 < stats[f"red/{name}/success"] < stats[f"red/{name}"] - stats[f"red/{name}/dropped"]
    assert all(stats[f"red/{name}"] > 0 for name in parity.RED_ACTIONS)
    assert stats["red/ExploitRemoteService/dropped"] > 0  # blue's Removes/Restores leave stale session ids
    assert all(1 <= stats[f"red/agent{i}/first_active"] <= 500 for i in parity.RED_AGENTS)


def test_verdicts_and_tost():
    rng = np.random.default_rng(0)
    same = {"return": rng.normal(-5000, 900, 1000), "x": rng.normal(1.0, 0.1, 1000)}
    other = {"return": rng.normal(-5000, 900, 100), "x": rng.normal(1.5, 0.1, 100)}
    report = compare(same, other, margin=350)
    assert report["statistics"]["return"]["within_2_sem"] and not report["statistics"]["x"]["within_2_sem"]
    low, high = report["return_gap"]["ci90"]
    assert low < report["return_gap"]["gap"] < high and report["return_gap"]["tost_equivalent"]
    assert not compare(same, other, margin=50)["return_gap"]["tost_equivalent"]
    table = format_table(report)
    assert "DIFFERS" in table and "equivalent at ±350" in table


def test_family_verdict_separates_chance_from_real_differences():
    """Of 100 statistics drawn from identical distributions ~5 land outside 2 SEM by chance; Holm flags none
    of them, but does flag a real shift."""
    rng = np.random.default_rng(1)
    sim = {f"s{i}": rng.normal(0, 1, 1000) for i in range(100)}
    cyborg = {f"s{i}": rng.normal(0, 1, 100) for i in range(100)}
    sim["return"], cyborg["return"] = rng.normal(0, 1, 1000), rng.normal(0, 1, 100)
    sim["shifted"], cyborg["shifted"] = rng.normal(0, 1, 1000), rng.normal(1.0, 1, 100)
    family = compare(sim, cyborg, margin=1)["family"]
    assert family["outside_2_sem"] >= 2 and family["expected_by_chance"] == pytest.approx(0.0455 * 102, rel=0.01)
    assert family["holm_differ"] == ["shifted"]
    assert "family-wise error (Holm): shifted" in format_table(compare(sim, cyborg, margin=1))


def test_replication_keeps_real_differences_and_drops_chance_ones():
    """Stage one: 100 equal statistics (a few outside 2 SEM by chance) and one real shift. On fresh episodes the
    shift recurs on the same side; the chance outliers come back inside."""

    def engines(seed: int) -> tuple[dict, dict]:
        rng = np.random.default_rng(seed)
        sim = {f"s{i}": rng.normal(0, 1, 1000) for i in range(100)} | {"return": rng.normal(0, 1, 1000)}
        cyborg = {f"s{i}": rng.normal(0, 1, 100) for i in range(100)} | {"return": rng.normal(0, 1, 100)}
        sim["shifted"], cyborg["shifted"] = rng.normal(0, 1, 1000), rng.normal(0.5, 1, 100)
        return sim, cyborg

    first = compare(*engines(3), margin=1)
    flagged = [key for key, row in first["statistics"].items() if not row["within_2_sem"]]
    assert "shifted" in flagged and len(flagged) >= 3
    fresh = compare(*engines(4), margin=1)
    again = parity.replicate(first, fresh)
    assert list(again["statistics"]) == flagged and again["recur"] == ["shifted"]
    table = format_table(first | {"replication": again})
    assert "RECURS" in table and "differences that recur: shifted" in table
    # outside again but with the gap's sign flipped: not the same difference
    flipped = {"statistics": {key: row | {"gap": -row["gap"]} for key, row in fresh["statistics"].items()}}
    again = parity.replicate(first, flipped)
    assert again["recur"] == []
    table = format_table(first | {"replication": again})
    assert "other side" in table and "RECURS" not in table and "differences that recur: none" in table


def test_replication_runs_both_engines_on_fresh_seeds(tmp_path, monkeypatch):
    calls = []

    def collect(engine, policy, seeds, workers, cache_dir):
        calls.append((engine, seeds))
        shift = 1.0 if engine == "cyborg" and seeds.start == 0 else 0.0  # a chance outlier in the first seeds only
        rng = np.random.default_rng(seeds.start + len(engine))
        return {"return": rng.normal(0, 1, len(seeds)), "x": rng.normal(shift, 1, len(seeds))}

    monkeypatch.setattr(parity, "cyborg_available", lambda: True)
    monkeypatch.setattr(parity, "collect", collect)
    out = tmp_path / "report.json"
    parity.run_parity("sleep", 100, 1000, 350, out, workers=1, cache_dir=tmp_path, replication=True)
    assert calls == [("sim", range(0, 1000)), ("cyborg", range(0, 100)), ("sim", range(1000, 2000)),
                     ("cyborg", range(100, 200))]  # fmt: skip
    report = json.loads(out.read_text())
    assert list(report["replication"]["statistics"]) == ["x"] and report["replication"]["recur"] == []
    assert report["calibration"]["episodes"] == 50  # CybORG seeds 0-49 against 50-99


def test_collect_keeps_seed_order(tmp_path, monkeypatch):
    """Cached episodes come back at once and computed ones later; the rows must still be in seed order, so a
    report's halves are fixed seed ranges."""
    monkeypatch.setattr(parity, "_cyborg_version", lambda: "test")
    computed = record_episode("sim", "random", seed=0)
    for seed in (1, 2, 3):
        path = parity.cache_path(tmp_path, "random", seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(computed | {"return": float(seed)}))
    returns = parity.collect("sim", "random", range(4), workers=2, cache_dir=tmp_path)["return"]
    assert list(returns) == [computed["return"], 1.0, 2.0, 3.0]


def test_cyborg_against_itself_shows_what_a_perfect_simulator_scores(capsys):
    """The calibration line splits CybORG's episodes in seed order: identical halves put a few statistics outside
    2 SEM by chance and Holm flags none; a statistic whose later seeds differ is caught."""
    rng = np.random.default_rng(5)
    cyborg = {f"s{i}": rng.normal(0, 1, 200) for i in range(100)} | {"return": rng.normal(0, 1, 200)}
    calibration = parity.self_comparison(cyborg, margin=1)
    assert calibration["episodes"] == 100 and calibration["statistics"] == 101
    assert 1 <= len(calibration["outside"]) <= 12 and calibration["holm_differ"] == []
    cyborg["drift"] = np.r_[rng.normal(0, 1, 100), rng.normal(1, 1, 100)]
    calibration = parity.self_comparison(cyborg, margin=1)
    assert "drift" in calibration["outside"] and calibration["holm_differ"] == ["drift"]
    table = format_table(compare(cyborg, cyborg, margin=1) | {"calibration": calibration})
    assert "CybORG against itself (100 vs 100 of its episodes" in table
    assert f"{102 - len(calibration['outside'])}/102 within 2 SEM; Holm: drift" in table


def test_topology_adjustment_removes_an_unlucky_draw_of_subnet_sizes():
    """Two engines with the same behaviour, one of which happened to draw small operational subnets: the plain
    means differ, the means at the expected topology agree and are tighter."""
    rng = np.random.default_rng(2)

    def engine(episodes: int, user_bias: int) -> dict[str, np.ndarray]:
        users = rng.integers(3, 11 - user_bias, episodes).astype(float)
        servers = rng.integers(1, 7, episodes).astype(float)
        ret = -6500 - 180 * (users - 6.5) + 200 * (servers - 3.5) + rng.normal(0, 300, episodes)
        subnet = "topology/operational_zone_b_subnet"
        return {"return": ret, f"{subnet}/users": users, f"{subnet}/servers": servers}

    report = compare(engine(2000, 0), engine(200, 2), margin=150)
    ret = report["statistics"]["return"]
    assert abs(ret["plain_gap"]) > 150 and abs(ret["gap"]) < 80 and report["return_gap"]["tost_equivalent"]
    assert ret["cyborg_sem"] < np.std(engine(200, 0)["return"], ddof=1) / np.sqrt(200)
    assert ret["cyborg_mean"] == pytest.approx(-6500, abs=80)
    users = report["statistics"]["topology/operational_zone_b_subnet/users"]
    assert users["cyborg_mean"] == pytest.approx(users["cyborg_plain_mean"])  # the topology itself is not adjusted


def test_parity_without_cyborg_reports_the_simulator(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(parity, "cyborg_available", lambda: False)
    out = tmp_path / "report.json"
    parity.run_parity("sleep", episodes=2, sim_episodes=4, margin=350, out=out, workers=2, cache_dir=tmp_path)
    report = json.loads(out.read_text())
    assert report["cyborg_episodes"] == 0 and "return_gap" not in report
    assert report["statistics"]["return"]["sim_mean"] < 0
    assert "return" in capsys.readouterr().out


@pytest.mark.cyborg
def test_cyborg_reward_split_matches_its_reward(tmp_path):
    """Seed 0 also has red actions CybORG drops (their session gone: red observes only its session check,
    and once, when red lost every session, nothing at all)."""
    stats = record_episode("cyborg", "random", seed=0)
    rng, restores = np.random.default_rng(10000), 0
    # the random policy's Restore submissions on existing hosts: each costs exactly -1
    from cage_sf.backends import make_backend

    env = make_backend("cyborg", seed=0)
    _, info = env.reset()
    for _ in range(498):
        for agent in sorted(cc4.AGENTS):
            kind = cc4.agent_type(agent)
            action = int(rng.integers(cc4.NUM_ACTIONS[kind]))
            restores += cc4.restore_actions(kind)[action] and info[agent]["action_mask"][action]
    assert sum(stats[f"phase{p}/restore"] for p in range(3)) == pytest.approx(-restores)
    assert stats["phase2/lwf"] < 0
    assert 0 < stats["red/Impact/success"] < stats["red/Impact"] and stats["red/DegradeServices"] > 0
    exploits, dropped = stats["red/ExploitRemoteService"], stats["red/ExploitRemoteService/dropped"]
    assert 0 < dropped and 0 < stats["red/ExploitRemoteService/success"] < exploits - dropped
    assert all(1 <= stats[f"red/agent{i}/first_active"] < 200 for i in parity.RED_AGENTS)
