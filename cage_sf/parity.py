"""`cage-sf parity`: our simulator against real CybORG on the statistics of docs/cc4.md §11.

Both engines play the same blue policy for N episodes (episode `s` uses engine seed `s` and policy rng
`10000 + s`, counted like CybORG's `evaluation.py`). Every statistic gets a verdict: the means agree
within 2 combined standard errors. Means are taken at the expected topology (a regression on each episode's
host counts, whose distribution is known exactly), since a run's random subnet sizes otherwise move the
return by more than the margin we test for; the plain means stay in the report. The episode return also
gets the gap with its 90% confidence interval and a TOST equivalence verdict at a margin. With ~130
statistics some land outside 2 SEM by chance: a family-wise (Holm) verdict sits beside them, and `--replicate`
re-tests those outside on fresh episodes, where a real difference recurs. CybORG is the slow side: its episodes
run in parallel processes and are cached on disk, so repeated comparisons reuse them.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import NormalDist

import numpy as np

from cage_sf import cc4
from cage_sf.agent.cc4_memory import ESCALATION_FILE
from cage_sf.backends import cyborg_available, make_backend
from cage_sf.evaluate import evaluation_episode, phase_of
from cage_sf.scripted import load_policy, scripted_chooser
from cage_sf.sim.red import ACTION_NAMES, WD
from cage_sf.sim.topology import (
    BLUE_SUBNETS,
    CON,
    MAX_SERVERS,
    MAX_USERS,
    MIN_SERVERS,
    MIN_USERS,
    NUM_RED,
    SUBNET_NAMES,
)
from cage_sf.stats import mean_and_sem

STATS_VERSION = 4  # bump when a statistic's definition changes: cached episodes are then recomputed
HOLDING_STEPS = (100, 250, 400, 499)
DEFENDED = {  # subnet name -> (blue agent, block index inside its observation / action slots)
    SUBNET_NAMES[subnet]: (agent, block)
    for agent, subnets in enumerate(BLUE_SUBNETS)
    for block, subnet in enumerate(subnets)
}
POPULATED = (*DEFENDED, SUBNET_NAMES[CON])
TERMS = ("lwf", "asf", "ria", "restore")
# §11.5 per episode: actions due (executed or dropped for a stale session id), dropped ones, successes of
# executed ones. CybORG's own counters call a dropped action TRUE: red's observation then holds only the
# end-of-turn session check, which always succeeds. Red never Withdraws.
RED_ACTIONS = ACTION_NAMES[:WD]
RED_SUCCESSES = ("ExploitRemoteService", "Impact")  # the two whose outcome varies without blue interference
RED_AGENTS = range(1, NUM_RED)  # red_agent_0 holds a foothold from step 0; the rest wait for phishing or a hand-over


class SimProbe:
    """Reads red holdings and the reward split out of our simulator."""

    def __init__(self, env) -> None:
        from cage_sf.sim.topology import SUBNET_NAMES

        self._env = env
        self._names = SUBNET_NAMES

    def reward_terms(self, team_reward: float) -> tuple[float, float, float, float]:
        t = self._env.reward_terms
        return t.local_work, t.access, t.impact, t.restore_cost

    def holdings(self) -> dict[str, tuple[float, float]]:
        topo = self._env.topology
        held, root = self._env.red.holdings(topo.num_hosts)
        return {
            name: (float(held[topo.subnet_hosts[s]].mean()), float(root[topo.subnet_hosts[s]].mean()))
            for s, name in enumerate(self._names)
            if name in POPULATED
        }

    def red_actions(self) -> list[tuple[str, bool | None]]:
        return [(ACTION_NAMES[kind], success) for kind, success in self._env.red_actions]

    def red_active(self) -> list[bool]:
        return [agent.active for agent in self._env.red.agents]


class CybORGProbe:
    """Reads the same out of CybORG's state; the reward split follows its BlueRewardMachine's rules."""

    def __init__(self, env) -> None:
        self._controller = env._cyborg.environment_controller

    def reward_terms(self, team_reward: float) -> tuple[float, float, float, float]:
        from CybORG.Shared.BlueRewardMachine import BlueRewardMachine

        state = self._controller.state
        table = BlueRewardMachine.get_phase_rewards(None, state.mission_phase)
        terms = {"LWF": 0.0, "ASF": 0.0, "RIA": 0.0}
        for agent, actions in self._controller.action.items():
            if not actions or not any(s.active for s in state.sessions[agent].values()):
                continue
            action, kind = actions[0], type(actions[0]).__name__
            success = self._controller.observation[agent].observations[0].data["success"]
            if "green" in agent and success == False:  # noqa: E712 - TernaryEnum compares with False
                term = {"GreenLocalWork": "LWF", "GreenAccessService": "ASF"}.get(kind)
                hostname = state.ip_addresses.get(getattr(action, "ip_address", None))
            elif "red" in agent and success and kind == "Impact":
                term, hostname = "RIA", action.hostname
            else:
                continue
            if term:
                terms[term] += table[state.hostname_subnet_map[hostname].value][term]
        restore = team_reward - sum(terms.values())
        return terms["LWF"], terms["ASF"], terms["RIA"], restore

    def holdings(self) -> dict[str, tuple[float, float]]:
        state = self._controller.state
        counts = {name: [0, 0, 0] for name in POPULATED}  # hosts, any red, red root
        for hostname, host in state.hosts.items():
            subnet = state.hostname_subnet_map[hostname].value
            if subnet not in counts or "router" in hostname:
                continue
            red = [
                state.sessions[agent][ident]
                for agent, idents in host.sessions.items()
                if agent.startswith("red")
                for ident in idents
            ]
            counts[subnet][0] += 1
            counts[subnet][1] += bool(red)
            counts[subnet][2] += any(session.username == "root" for session in red)
        return {name: (c[1] / c[0], c[2] / c[0]) for name, c in counts.items()}

    def red_actions(self) -> list[tuple[str, bool | None]]:
        """(name, success) of each red action due this step; None when CybORG dropped it unexecuted (its
        observation list then lacks the action's own entry, the one that carries the action)."""
        from CybORG.Shared.Enums import TernaryEnum

        due = []
        for agent, actions in self._controller.action.items():
            if agent.startswith("red") and actions and type(actions[0]).__name__ in RED_ACTIONS:
                observed = self._controller.observation[agent].observations
                own = [o for o in observed if o.data.get("action") is actions[0]]
                success = own[0].data.get("success") == TernaryEnum.TRUE if own else None
                due.append((type(actions[0]).__name__, success))
        return due

    def red_active(self) -> list[bool]:
        interfaces = self._controller.agent_interfaces
        return [interfaces[f"red_agent_{i}"].active for i in range(NUM_RED)]


def flag_slices(agent: int) -> list[tuple[str, int]]:
    """(subnet, start of its block of the observation) for each subnet an agent observes."""
    return [(name, cc4.subnet_block_start(block)) for name, (a, block) in DEFENDED.items() if a == agent]


def record_episode(engine: str, policy: str, seed: int) -> dict[str, float]:
    """Play one evaluation-style episode and return its statistics as a flat {name: value} dict."""
    env = make_backend(engine, seed=seed)
    probe = SimProbe(env) if engine == "sim" else CybORGProbe(env)
    choose, masks = scripted_chooser(load_policy(policy)(), env, np.random.default_rng(10000 + seed))

    stats: dict[str, float] = {"return": 0.0}
    stats |= {f"phase{p}/{term}": 0.0 for p in range(3) for term in ("sum", *TERMS)}
    stats |= {f"red/{name}": 0.0 for name in RED_ACTIONS} | {f"red/{name}/dropped": 0.0 for name in RED_ACTIONS}
    stats |= {f"red/{name}/success": 0.0 for name in RED_SUCCESSES}
    first_active = {f"red/agent{i}/first_active": float(cc4.EPISODE_STEPS) for i in RED_AGENTS}
    hosts = {}
    flags = {f"flags/{kind}/{name}": 0.0 for name in DEFENDED for kind in ("process", "connection")}
    stats["analysis/findings"] = 0.0  # hosts where a finished Analyse found red's files
    stats["analysis/escalations"] = 0.0  # ... and among them an escalation's file
    steps = 0
    for k, obs, team_reward in evaluation_episode(env, choose):
        if k == 1:
            for name, (agent, block) in DEFENDED.items():
                slots = masks[cc4.AGENTS[agent]][cc4.SLOTS_PER_SUBNET * block :][: cc4.SLOTS_PER_SUBNET]
                hosts[name] = slots
                stats[f"topology/{name}/servers"] = float(slots[: cc4.SERVER_SLOTS].sum())
                stats[f"topology/{name}/users"] = float(slots[cc4.SERVER_SLOTS :].sum())
        steps = k
        found = [env.analysis(a) for a in cc4.AGENTS]
        stats["analysis/findings"] += sum(int((codes > 0).sum()) for codes in found)
        stats["analysis/escalations"] += sum(int((codes == ESCALATION_FILE).sum()) for codes in found)
        for i, agent in enumerate(cc4.AGENTS):
            for name, start in flag_slices(i):
                flags[f"flags/process/{name}"] += (
                    obs[agent][start + cc4.PROCESS_FLAGS :][: cc4.SLOTS_PER_SUBNET] @ hosts[name]
                )
                flags[f"flags/connection/{name}"] += (
                    obs[agent][start + cc4.CONNECTION_FLAGS :][: cc4.SLOTS_PER_SUBNET] @ hosts[name]
                )
        for name, success in probe.red_actions():
            stats[f"red/{name}"] += 1
            stats[f"red/{name}/dropped"] += success is None
            if name in RED_SUCCESSES:
                stats[f"red/{name}/success"] += bool(success)
        active = probe.red_active()
        for i in RED_AGENTS:
            key = f"red/agent{i}/first_active"
            if active[i]:
                first_active[key] = min(first_active[key], k)
        if k in HOLDING_STEPS:
            for name, (held, root) in probe.holdings().items():
                stats[f"holdings@{k}/{name}/any"], stats[f"holdings@{k}/{name}/root"] = held, root
        if team_reward is None:
            continue
        phase = phase_of(obs)
        stats["return"] += team_reward
        stats[f"phase{phase}/sum"] += team_reward
        for term, value in zip(TERMS, probe.reward_terms(team_reward), strict=True):
            stats[f"phase{phase}/{term}"] += value
    for key, count in flags.items():
        stats[key] = count / (steps * hosts[key.split("/")[2]].sum())
    return stats | first_active


def _record(args: tuple[str, str, int, str | None]) -> dict[str, float]:
    engine, policy, seed, cache_file = args
    if cache_file and os.path.exists(cache_file):
        return json.loads(Path(cache_file).read_text())
    stats = record_episode(engine, policy, seed)
    if cache_file:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        Path(cache_file).write_text(json.dumps(stats))
    return stats


def _cyborg_version() -> str:
    import CybORG

    return str(getattr(CybORG, "CYBORG_VERSION", "unknown"))


def cache_path(cache_dir: Path, policy: str, seed: int) -> Path:
    key = hashlib.sha1(f"{policy}|{_cyborg_version()}|{STATS_VERSION}".encode()).hexdigest()[:12]
    return cache_dir / f"{policy.replace(':', '_').replace('/', '_')}-{key}" / f"{seed}.json"


def run_episodes(engine: str, policy: str, seeds: range, workers: int, cache_dir: Path | None) -> Iterator[dict]:
    jobs = [(engine, policy, s, str(cache_path(cache_dir, policy, s)) if cache_dir else None) for s in seeds]
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_record, jobs)  # in seed order, so a report's halves are fixed seed ranges


def collect(engine: str, policy: str, seeds: range, workers: int, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """The statistics of one episode per seed, as {statistic: per-episode values}."""
    started, rows = time.monotonic(), []
    for row in run_episodes(engine, policy, seeds, workers, cache_dir):
        rows.append(row)
        elapsed = time.monotonic() - started
        eta = elapsed / len(rows) * (len(seeds) - len(rows))
        progress = f"{engine} seeds {seeds.start}-{seeds.stop - 1}: {len(rows)}/{len(seeds)} episodes"
        print(f"\r{progress}, {elapsed:.0f}s, ETA {eta:.0f}s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def topology_covariates(stats: dict[str, np.ndarray]) -> np.ndarray | None:
    """Each episode's host counts minus their exact expectation: both engines draw users U{3..10} and servers
    U{1..6} per subnet, so the expectation is known and needs no estimate."""
    keys = sorted(key for key in stats if key.startswith("topology/"))
    if not keys:
        return None
    expected = [(MIN_USERS + MAX_USERS if key.endswith("/users") else MIN_SERVERS + MAX_SERVERS) / 2 for key in keys]
    return np.column_stack([stats[key] for key in keys]) - np.array(expected)


def adjusted_mean_sem(values: np.ndarray, covariates: np.ndarray | None) -> tuple[float, float]:
    """The mean at the expected topology (regression estimator with known covariate means) and its SEM.

    Unbiased like the plain mean, but it removes the share of the spread that comes from each episode's random
    host counts (LWF scales with the user hosts of the operational zones), so a sample that happened to draw
    small subnets no longer looks like a different simulator. Falls back to the plain mean when the design is
    too small or the statistic is the topology itself.
    """
    n = len(values)
    if covariates is None or n <= 2 * (covariates.shape[1] + 1):
        return mean_and_sem(values)
    design = np.column_stack([np.ones(n), covariates])
    beta, _, rank, _ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - design @ beta
    if rank < design.shape[1] or not residual.any():
        return mean_and_sem(values)
    variance = residual @ residual / (n - design.shape[1])
    return float(beta[0]), float(math.sqrt(variance * np.linalg.inv(design.T @ design)[0, 0]))


def compare(sim: dict[str, np.ndarray], cyborg: dict[str, np.ndarray] | None, margin: float) -> dict:
    """Per statistic: both engines' topology-adjusted means and SEMs (plain means beside them) and the 2-SEM
    verdict; for the return also the gap's 90% CI and TOST."""
    engines = {"sim": sim} | ({"cyborg": cyborg} if cyborg is not None else {})
    covariates = {name: topology_covariates(stats) for name, stats in engines.items()}
    rows = {}
    for key in sim:
        row = {}
        for name, stats in engines.items():
            adjust = None if key.startswith("topology/") else covariates[name]
            row[f"{name}_mean"], row[f"{name}_sem"] = adjusted_mean_sem(stats[key], adjust)
            row[f"{name}_plain_mean"] = float(stats[key].mean())
        if cyborg is not None:
            gap, se = row["sim_mean"] - row["cyborg_mean"], math.hypot(row["sim_sem"], row["cyborg_sem"])
            p_value = 2 * (1 - NormalDist().cdf(abs(gap) / se)) if se > 0 else float(gap == 0)
            row |= {"gap": gap, "within_2_sem": abs(gap) <= 2 * se or gap == 0, "p_value": p_value}
            row["plain_gap"] = row["sim_plain_mean"] - row["cyborg_plain_mean"]
        rows[key] = row
    report = {"statistics": rows}
    if cyborg is not None:
        report["family"] = family_verdict(rows)
        ret = rows["return"]
        z = NormalDist().inv_cdf(0.95)
        se = math.hypot(ret["sim_sem"], ret["cyborg_sem"])
        low, high = ret["gap"] - z * se, ret["gap"] + z * se
        equivalent = -margin < low and high < margin
        report["return_gap"] = {
            "gap": ret["gap"],
            "ci90": [low, high],
            "margin": margin,
            "tost_equivalent": equivalent,
            "plain_gap": ret["plain_gap"],
            "plain_ci90_halfwidth": z * math.hypot(*(mean_and_sem(e["return"])[1] for e in engines.values())),
        }
    return report


def family_verdict(rows: dict[str, dict], alpha: float = 0.05) -> dict:
    """Many statistics at 2 SEM each: a perfect simulator still shows ~4.6% of them outside by chance. Holm's
    step-down test names the statistics that differ with a family-wise error rate of `alpha`."""
    ordered = sorted(rows, key=lambda key: rows[key]["p_value"])
    differ = []
    for rank, key in enumerate(ordered):
        if rows[key]["p_value"] > alpha / (len(ordered) - rank):
            break
        differ.append(key)
    outside = sum(not row["within_2_sem"] for row in rows.values())
    expected = 2 * (1 - NormalDist().cdf(2)) * len(rows)
    return {"outside_2_sem": outside, "expected_by_chance": expected, "holm_differ": differ, "alpha": alpha}


def _with_cyborg(line: str, row: dict, verdict: str) -> str:
    return line + f" {row['cyborg_mean']:>11.4g} ± {row['cyborg_sem']:<6.2g} {row['gap']:>9.3g}  {verdict}"


def _replication_verdict(key: str, row: dict, again: dict) -> str:
    """RECURS: outside again on the same side; other side: outside again but the gap changed sign; gone: inside."""
    if key in again["recur"]:
        return "RECURS"
    return "gone" if row["within_2_sem"] else "other side"


def format_table(report: dict) -> str:
    stats = report["statistics"]
    with_cyborg = "cyborg_mean" in next(iter(stats.values()))
    header = f"{'statistic':52} {'sim':>20}" + (f" {'cyborg':>20} {'gap':>9}  verdict" if with_cyborg else "")
    lines = [header + ("  (means at the expected topology)" if with_cyborg else ""), "-" * len(header)]
    for key, row in stats.items():
        line = f"{key:52} {row['sim_mean']:>11.4g} ± {row['sim_sem']:<6.2g}"
        lines.append(_with_cyborg(line, row, "ok" if row["within_2_sem"] else "DIFFERS") if with_cyborg else line)
    if gap := report.get("return_gap"):
        low, high = gap["ci90"]
        verdict = "equivalent" if gap["tost_equivalent"] else "NOT shown equivalent"
        lines.append(
            f"return gap {gap['gap']:.1f}, 90% CI [{low:.1f}, {high:.1f}]: {verdict} at ±{gap['margin']:g} (TOST); "
            f"plain means: {gap['plain_gap']:.1f} ± {gap['plain_ci90_halfwidth']:.1f}"
        )
        family = report["family"]
        differ = ", ".join(family["holm_differ"]) or "none"
        lines.append(
            f"{len(stats) - family['outside_2_sem']}/{len(stats)} statistics within 2 SEM "
            f"(a perfect simulator: ~{family['expected_by_chance']:.1f} outside by chance); "
            f"differing at a {family['alpha']:.0%} family-wise error (Holm): {differ}"
        )
    if calibration := report.get("calibration"):
        n, total = calibration["episodes"], calibration["statistics"]
        lines.append(
            f"CybORG against itself ({n} vs {n} of its episodes, what a perfect simulator scores here): "
            f"{total - len(calibration['outside'])}/{total} within 2 SEM; "
            f"Holm: {', '.join(calibration['holm_differ']) or 'none'}"
        )
    if again := report.get("replication"):
        lines.append("outside 2 SEM, re-tested on as many fresh episodes (seeds after the first ones):")
        for key, row in again["statistics"].items():
            line = f"  {key:50} {row['sim_mean']:>11.4g} ± {row['sim_sem']:<6.2g}"
            lines.append(_with_cyborg(line, row, _replication_verdict(key, row, again)))
        lines.append(f"differences that recur: {', '.join(again['recur']) or 'none'}")
    return "\n".join(lines)


def replicate(first: dict, fresh: dict) -> dict:
    """Re-read the statistics outside 2 SEM in `first` from a comparison on fresh, independent episodes.

    With ~130 statistics a perfect simulator puts ~6 outside 2 SEM; a real difference stays outside, on the same
    side, in new episodes, while a chance one comes back inside (it recurs with probability ~2.3%).
    """
    flagged = [key for key, row in first["statistics"].items() if not row.get("within_2_sem", True)]
    rows = {key: fresh["statistics"][key] for key in flagged}
    recur = [
        key
        for key in flagged
        if not rows[key]["within_2_sem"] and np.sign(rows[key]["gap"]) == np.sign(first["statistics"][key]["gap"])
    ]
    return {"statistics": rows, "recur": recur}


def self_comparison(cyborg: dict[str, np.ndarray], margin: float) -> dict:
    """CybORG's first half of episodes against its second half, through the same comparison.

    The yardstick for the simulator's line: what a perfect simulator scores on these statistics and episodes.
    The statistics are correlated (holdings, flags and rewards move together), so the count outside 2 SEM
    spreads wider than the binomial count the family line quotes.
    """
    half = len(cyborg["return"]) // 2
    report = compare(
        {k: v[:half] for k, v in cyborg.items()}, {k: v[half : 2 * half] for k, v in cyborg.items()}, margin
    )
    outside = [key for key, row in report["statistics"].items() if not row["within_2_sem"]]
    return {"episodes": half, "statistics": len(report["statistics"]), "outside": outside,
            "holm_differ": report["family"]["holm_differ"]}  # fmt: skip


def run_parity(policy: str, episodes: int, sim_episodes: int, margin: float, out: Path, workers: int,
               cache_dir: Path, replication: bool = False) -> dict:  # fmt: skip
    """Compare on seeds 0..N-1; with `replication`, re-test what lies outside 2 SEM on seeds N..2N-1."""
    load_policy(policy)  # fail fast on a bad name
    with_cyborg = cyborg_available()
    if not with_cyborg:
        print("CybORG is not installed: simulator statistics only", file=sys.stderr)

    def comparison(stage: int) -> tuple[dict, dict | None]:
        sim = collect("sim", policy, range(stage * sim_episodes, (stage + 1) * sim_episodes), workers, None)
        seeds = range(stage * episodes, (stage + 1) * episodes)
        cyborg = collect("cyborg", policy, seeds, workers, cache_dir) if with_cyborg else None
        return compare(sim, cyborg, margin), cyborg

    report = {"policy": policy, "sim_episodes": sim_episodes, "cyborg_episodes": episodes if with_cyborg else 0}
    first, cyborg = comparison(0)
    report |= first
    if cyborg is not None and episodes >= 4:  # two episodes per half at least, for a SEM
        report["calibration"] = self_comparison(cyborg, margin)
    if replication and with_cyborg and report["family"]["outside_2_sem"]:
        report["replication"] = replicate(report, comparison(1)[0])
    print(format_table(report))
    out.write_text(json.dumps(report, indent=1))
    print(f"report written to {out}")
    return report
