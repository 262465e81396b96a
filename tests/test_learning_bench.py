"""The learning benchmark's pieces (bench/learning.py, cage_sf/cyborg_evaluation.py, cage_sf/scripted_submission.py and
the two-panel learning curves of cage_sf/plots.py), without training anything."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.cyborg_evaluation import cyborg_plan, read_cyborg_output
from cage_sf.errors import UsageError
from cage_sf.evaluate import evaluation_episode
from cage_sf.scripted import load_policy
from cage_sf.scripted_submission import ScriptedAgent, scripted_agents, write_submission
from cage_sf.sim import make_cc4
from cage_sf.stats import Group, mean_and_sem, paired_difference, pooled

REPO = Path(__file__).resolve().parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("learning_bench", REPO / "bench" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- pooling CybORG's per-process results --------------------------------------------------------------------


def test_pooling_per_process_mean_stdev_count_equals_the_statistics_of_all_episodes():
    rng = np.random.default_rng(0)
    chunks = [list(rng.normal(-1600 + 300 * k, 400 + 100 * k, size=n)) for k, n in enumerate((2, 3, 5, 7))]
    every = [r for chunk in chunks for r in chunk]
    m, sem, n = pooled([Group.of(chunk) for chunk in chunks])
    assert n == len(every) == 17
    assert m == pytest.approx(np.mean(every))
    assert sem == pytest.approx(np.std(every, ddof=1) / math.sqrt(len(every)))
    assert (m, sem) == pytest.approx(mean_and_sem(every))


def test_pooling_one_group_and_identical_means():
    assert pooled([Group(-100.0, 10.0, 4)]) == pytest.approx((-100.0, 5.0, 4))
    m, sem, n = pooled([Group(-100.0, 0.0, 2), Group(-100.0, 0.0, 3)])
    assert (m, sem, n) == (pytest.approx(-100.0), 0.0, 5)
    with pytest.raises(ValueError):
        pooled([])


@pytest.mark.parametrize(
    ("episodes", "workers", "chunk", "sizes"),
    [(50, 2, 5, [5] * 10), (4, 2, 5, [2, 2]), (5, 16, 5, [3, 2]), (2, 8, 5, [2]), (50, 16, 5, [4, 4] + [3] * 14)],
)
def test_cyborg_plan_covers_every_episode_with_disjoint_seeds(episodes, workers, chunk, sizes):
    plan = cyborg_plan(episodes, workers, seed=7, chunk=chunk)
    assert [n for _, n in plan] == sizes and sum(sizes) == episodes
    assert [s for s, _ in plan] == list(range(7, 7 + len(plan)))  # one seed per evaluation.py process
    with pytest.raises(ValueError):
        cyborg_plan(1, 2, seed=0)


def test_reads_per_episode_returns_from_full_txt_else_the_summary(tmp_path):
    summary = {"reward": {"mean": -1272, "stdev": 538.8153672641492}, "parameters": {"max_episodes": 2}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "full.txt").write_text(
        "CybORG v4.0, Scenario4\nAuthor: x\nAverage reward is: -1272 with a standard deviation of 538.8\n"
        "actions: [{'blue_agent_0': Sleep}],\n observations: [{'blue_agent_0': array([0, 1])}],\n total reward: -891\n"
        "actions: [],\n observations: [],\n total reward: -1653\n"
    )
    group, returns = read_cyborg_output(tmp_path, 2)
    assert returns == [-891.0, -1653.0] and group == Group.of(returns)
    assert (group.mean, group.stdev) == pytest.approx((-1272, 538.8153672641492))
    (tmp_path / "full.txt").unlink()  # deleted, or cut short: pool from the summary alone
    assert read_cyborg_output(tmp_path, 2) == (Group(-1272, 538.8153672641492, 2), None)


# ---- the scripted submission's per-agent wrapper -------------------------------------------------------------


def play(env, choose, episodes: int) -> list[list[dict[str, int]]]:
    """Every step's joint action over `episodes` evaluation-style episodes."""
    played: list[list[dict[str, int]]] = []

    def recording(observations):
        played[-1].append(choose(observations))
        return played[-1][-1]

    for _ in range(episodes):
        played.append([])
        for _ in evaluation_episode(env, recording):
            pass
    return played


@pytest.mark.parametrize(
    "policy", ["remove-analyse-restore", "analyse-restore", "restore-decoy", "remove-restore", "sleep"]
)
def test_per_agent_wrapper_plays_the_joint_policys_actions_on_the_simulator(policy):
    env = make_cc4(seed=3)
    state = {}

    def joint(observations):
        if env.step_count == 0:  # a fresh policy and this episode's masks, as cage-sf parity plays it
            state["act"] = load_policy(policy)()
            state["masks"] = {a: env.action_mask(a) for a in cc4.AGENTS}
        return state["act"](observations, state["masks"], None, {a: env.analysis(a) for a in cc4.AGENTS})

    expected = play(env, joint, episodes=2)
    env = make_cc4(seed=3)
    agents = scripted_agents(policy)
    for agent in agents.values():
        agent.attach(env)
    got = play(env, lambda obs: {a: agents[a].get_action(obs[a], env.action_space(a)) for a in env.agents}, 2)
    assert got == expected
    assert [len(episode) for episode in got] == [cc4.EPISODE_STEPS - 1] * 2  # done after step 499
    if policy != "sleep":  # the defender did react, in both episodes
        restores = [sum(cc4.restore_actions(cc4.agent_type(a))[s[a]] for s in ep for a in s) for ep in got]
        assert min(restores) > 0


def test_unattached_agent_counts_its_own_calls_as_the_step():
    agent = ScriptedAgent("blue_agent_4", "restore-decoy")
    quiet = np.zeros(cc4.OBS_SIZE[cc4.LARGE], np.int64)
    first = [agent.get_action(quiet) for _ in range(3)]
    assert first[0] == cc4.action_index(cc4.LARGE, "DeployDecoy", 0)  # all actions valid without an env
    assert first[1] == cc4.sleep_action(cc4.LARGE)  # busy: DeployDecoy takes 2 steps
    for _ in range(cc4.EPISODE_STEPS - 4):
        agent.get_action(quiet)
    assert agent.get_action(quiet) == first[0]  # call 500: a new episode (done after 499 steps), a fresh policy


def test_written_submission_names_the_policy_and_refuses_unknown_ones(tmp_path):
    source = (write_submission(tmp_path / "s", "remove-restore") / "submission.py").read_text()
    assert "POLICY = 'remove-restore'" in source and "def wrap(env: CybORG) -> EnterpriseMAE" in source
    compile(source, "submission.py", "exec")
    with pytest.raises(UsageError, match="unknown policy"):
        write_submission(tmp_path / "t", "no-such-policy")


@pytest.mark.cyborg
@pytest.mark.slow
def test_scripted_defender_through_cyborgs_evaluation_is_pooled_and_cached(tmp_path):
    from cage_sf.cyborg_evaluation import scripted_cyborg

    plan = [(0, 2), (1, 2)]
    result, cached = scripted_cyborg("restore-decoy", plan, 2, tmp_path / "work", cache_dir=tmp_path / "cache")
    assert not cached and result.episodes == 4 and len(result.returns) == 4
    assert (result.mean, result.sem) == pytest.approx(mean_and_sem(result.returns))
    assert -6000 < result.mean < 0
    summary = json.loads((tmp_path / "work" / "evaluation" / "seed_1" / "summary.json").read_text())
    assert summary["parameters"] == {"seed": 1, "episode_length": 500, "max_episodes": 2}
    again, cached = scripted_cyborg("restore-decoy", plan, 2, tmp_path / "elsewhere", cache_dir=tmp_path / "cache")
    assert cached and again == result and not (tmp_path / "elsewhere").exists()


# ---- paired comparisons and the command mix --------------------------------------------------------------------


def test_paired_difference_is_the_mean_and_sem_of_the_per_episode_differences():
    learned, scripted = [-150.0, -170.0, -160.0, -200.0], [-160.0, -170.0, -180.0, -190.0]  # differences 10 0 20 -10
    difference, se = paired_difference(learned, scripted)
    assert difference == 5.0
    assert se == pytest.approx(math.sqrt((5**2 + 5**2 + 15**2 + 15**2) / 3) / 2)  # stdev of the differences / sqrt(4)
    with pytest.raises(ValueError):
        paired_difference(learned, scripted[:3])  # unmatched episodes


class Recording(ScriptedAgent):
    """A scripted agent logging each step's action, whether the backend had it busy, and each episode's first
    observation and action mask (the mask says which hosts the network has)."""

    log: list[tuple[str, int, bool]] = []
    starts: list[np.ndarray] = []

    def get_action(self, observation, action_space=None) -> int:
        action = super().get_action(observation, action_space)
        if self.env.step_count == 0 and self.name == cc4.AGENTS[4]:
            Recording.starts.append(np.concatenate([observation, self.env.action_mask(self.name)]))
        Recording.log.append((self.name, action, self.name in self.env.busy_agents()))
        return action


def test_play_reports_each_commands_share_of_the_decisions_and_meets_the_same_episodes_on_a_seed():
    from cage_sf.evaluate import play

    starts, mixes = {}, {}
    for policy in ("restore-decoy", "sleep"):
        Recording.log, Recording.starts = [], []
        played = play({a: Recording(a, policy) for a in cc4.AGENTS}, "sim", episodes=2, seed=7)
        starts[policy], mixes[policy] = Recording.starts, played.command_mixes
        steps = len(Recording.log) // 2  # the log of each episode in turn
        for episode, mix in zip((Recording.log[:steps], Recording.log[steps:]), played.command_mixes, strict=True):
            decisions = [cc4.action_commands(cc4.agent_type(a))[i] for a, i, busy in episode if not busy]
            assert len(decisions) < len(episode) or policy == "sleep"  # busy agents' actions are no decisions
            assert mix == pytest.approx({c: decisions.count(c) / len(decisions) for c in cc4.COMMANDS})
            assert sum(mix.values()) == pytest.approx(1.0)
    assert mixes["sleep"] == [{c: float(c == "Sleep") for c in cc4.COMMANDS}] * 2
    assert mixes["restore-decoy"][0]["DeployDecoy"] > 0 and mixes["restore-decoy"][0]["Restore"] > 0
    for a, b in zip(starts["restore-decoy"], starts["sleep"], strict=True):  # episode k: seed 7 + k for both
        assert np.array_equal(a, b)
    assert not np.array_equal(*starts["sleep"])


# ---- argument validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--minutes=0"], "--minutes must be positive"),
        (["--minutes=-3"], "--minutes must be positive"),
        (["--minutes=nan"], "--minutes must be positive"),
        (["--env_steps=0"], "--env_steps must be positive"),
        (["--minutes=5", "--env_steps=1000"], "exactly one of --minutes and --env_steps"),
        ([], "exactly one of --minutes and --env_steps"),
        (["--preset=nope", "--minutes=1"], "unknown preset 'nope'"),
        (["--minutes=1", "--cyborg_episodes=1"], "--cyborg_episodes must be 0"),
        (["--minutes=1", "--workers=0"], "--workers and --cyborg_chunk must be at least 1"),
        (["--minutes=1", "--backend=cyborg"], "--backend is set by the benchmark"),
        (["--minutes=1", "--train_for_env_steps=5"], "use --env_steps"),
        (["--minutes=1", "--num_workers"], "must look like --name=value"),
        (["--minutes=ten"], "invalid float value"),
        (["--minutes=1", "--scripted=random"], "invalid choice"),
    ],
)
def test_options_that_make_no_sense_are_one_line_and_exit_2(argv, message, capsys):
    assert load_bench().main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("bench/learning.py: error: ")


def test_options_resolve_the_run_and_pass_the_rest_to_training(tmp_path):
    args, overrides = load_bench().parse_args(
        ["--preset=smoke", "--env_steps=4000", f"--train_dir={tmp_path}/runs", "--num_workers=1", "--seed=3"]
    )
    assert args.experiment == "learning-smoke" and args.train_dir == (tmp_path / "runs").resolve()
    assert overrides == ["--num_workers=1", "--seed=3"] and args.cyborg_episodes == 50 and args.episodes == 100
    assert args.scripted == "remove-analyse-restore" and args.minutes is None  # the best scripted defender


def test_a_yaml_preset_is_passed_on_as_an_absolute_path(monkeypatch):
    monkeypatch.chdir(REPO)
    args, _ = load_bench().parse_args(["--preset=configs/smoke.yaml", "--minutes=2"])
    assert args.preset == str(REPO / "configs" / "smoke.yaml") and args.experiment == "learning-smoke"


def test_a_failed_step_exits_1_and_says_so(tmp_path, monkeypatch, capsys):
    bench = load_bench()
    commands = []
    monkeypatch.setattr(bench, "stream", lambda command: commands.append(command) or 3)
    assert bench.main(["--preset=smoke", "--env_steps=100", f"--train_dir={tmp_path}", "--num_workers=1"]) == 1
    assert capsys.readouterr().err == "bench/learning.py: training exited with status 3\n"
    (command,) = commands
    assert command[:3] == [str(REPO / "train.sh"), "smoke", "--backend=sim"]
    assert command[3:] == [
        f"--train_dir={tmp_path.resolve()}", "--experiment=learning-smoke", "--train_for_env_steps=500",
        "--train_for_seconds=10000000000", "--num_workers=1",
    ]  # fmt: skip


def test_the_script_itself_exits_2_with_one_line():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "learning.py"), "--minutes=0"], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "bench/learning.py: error: --minutes must be positive, not 0.0\n"


# ---- learning curves against env steps and training time -----------------------------------------------------


def write_session(summary: Path, suffix: str, points: list[tuple[int, float, float]]) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(summary), filename_suffix=suffix)
    for step, value, wall in points:
        writer.add_scalar("cc4/eval_return", value, step, walltime=wall)
        writer.add_scalar("perf/_fps", 1000.0, step, walltime=wall)
    writer.close()


@pytest.fixture
def resumed_run(tmp_path):
    """A run interrupted after 40 s at agent step 4000 and resumed from its checkpoint at step 3000 an hour later."""
    run = tmp_path / "run"
    summary = run / ".summary" / "0"
    write_session(summary, ".a", [(1000 * k, -5000.0 + 500 * k, 1000.0 + 10 * k) for k in range(5)])
    write_session(summary, ".b", [(3000 + 1000 * k, -3500.0 + 500 * k, 4600.0 + 10 * k) for k in range(3)])
    return run


def test_series_joins_sessions_on_one_training_clock(resumed_run):
    from cage_sf.plots import read_series, training_seconds

    series = read_series(resumed_run, "cc4/eval_return")
    assert series.steps.tolist() == [0, 1000, 2000, 3000, 4000, 5000]  # session a's 3000 and 4000 were redone
    assert series.values.tolist() == [-5000, -4500, -4000, -3500, -3000, -2500]
    assert series.seconds.tolist() == pytest.approx([0, 10, 20, 40, 50, 60])  # the hour between sessions left out
    assert training_seconds(resumed_run) == pytest.approx(60.0)
    assert training_seconds(resumed_run / "nothing") == 0.0


def test_two_panel_curves_against_env_steps_and_training_time(resumed_run, monkeypatch):
    import matplotlib.pyplot as plt

    from cage_sf import plots

    saved = {}
    savefig = plt.Figure.savefig

    def keep(fig, path, **kwargs):
        saved["axes"] = [
            (ax.get_xlabel(), [np.asarray(x.get_xdata()).tolist() for x in ax.get_lines()]) for ax in fig.axes
        ]
        savefig(fig, path, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    path = plots.plot_learning_curves(
        resumed_run, resumed_run / "bench.png", wall_clock=True, references={"CybORG, scripted": -1600.0}
    )
    assert path.read_bytes()[:4] == b"\x89PNG"
    (steps_label, steps_lines), (time_label, time_lines) = saved["axes"]
    assert steps_label.startswith("env steps") and time_label.startswith("training time (minutes)")
    assert steps_lines[0] == [0, 200, 400, 600, 800, 1000]  # agent steps / 5
    assert time_lines[0] == pytest.approx([0, 1 / 6, 1 / 3, 2 / 3, 5 / 6, 1])
    assert len(steps_lines) == len(time_lines) == 2  # the curve and the reference line


def plotted(tmp_path, capsys, points: list[tuple[int, float]]) -> list[str]:
    """What `cage-sf plot` prints, with windows of 100 env steps (500 agent steps), for a run whose training return
    was `points` (agent step, value)."""
    from cage_sf.cli import main

    run = tmp_path / "run"
    write_session(run / ".summary" / "0", ".a", [(step, value, 1000.0 + step) for step, value in points])
    (run / "config.json").write_text("{}")
    assert main(["plot", str(run), "--window_env_steps=100"]) == 0
    return capsys.readouterr().out.splitlines()


def test_plot_prints_the_return_per_window_and_its_deepest_fall_below_an_earlier_best(tmp_path, capsys):
    """The run climbs to -300, falls 15% to -345, recovers to -320 (it ends halfway through that last window, so
    it is judged)."""
    points = [(0, -1000.0), (250, -800.0), (500, -400.0), (1000, -300.0), (1500, -345.0), (2000, -320.0)]
    out = plotted(tmp_path, capsys, [*points, (2250, -320.0)])
    assert out[1] == "training return per 100 env steps: -900 -400 -300 -345 -320"
    assert out[2] == "largest fall below an earlier best window: 15.0% (-300 from 200 env steps, -345 from 300)"


def test_a_run_that_ended_early_in_its_last_window_is_not_judged_on_it(tmp_path, capsys):
    """-900, -400, -300, -310, then one summary 10 env steps into the next window at -500 (the run's final
    minutes): shown apart, and the deepest fall is the whole windows' 3.3%, not 66.7%."""
    points = [(0, -1000.0), (250, -800.0), (500, -400.0), (1000, -300.0), (1500, -310.0), (2050, -500.0)]
    out = plotted(tmp_path, capsys, points)
    assert out[1] == "training return per 100 env steps: -900 -400 -300 -310"
    assert out[2] == "the run ended early in the next window (from 400 env steps): -500, not judged"
    assert out[3] == "largest fall below an earlier best window: 3.3% (-300 from 200 env steps, -310 from 300)"


def test_a_return_that_only_climbs_never_fell():
    from cage_sf.plots import largest_fall

    assert largest_fall([(0, -900.0), (100, -400.0), (200, -400.0)]) is None
    assert largest_fall([]) is None


def stubbed_bench(tmp_path, monkeypatch, options: list[str]):
    """The benchmark with training, export, the trained policy's simulator evaluation (returns -150, -170; one
    episode all Restore, one all Sleep) and the curves stubbed out; its parsed arguments and the curves' lines."""
    from cage_sf import plots

    bench = load_bench()
    monkeypatch.setattr(bench, "train", lambda args, overrides, run: None)
    monkeypatch.setattr(bench, "export", lambda args: tmp_path / "submission")
    mixes = [{c: float(c == "Restore") for c in cc4.COMMANDS}, {c: float(c == "Sleep") for c in cc4.COMMANDS}]
    episodes = {"returns": [-150.0, -170.0], "command_mixes": mixes}
    monkeypatch.setattr(bench, "evaluate_sim", lambda args, submission, out: episodes)
    lines = {}
    monkeypatch.setattr(
        plots, "plot_learning_curves", lambda run, path, wall_clock, references: lines.update(references)
    )
    monkeypatch.setattr(plots, "read_series", lambda run, tag: plots.Series(*[np.zeros(0)] * 3))
    args = bench.parse_args(["--preset=smoke", "--env_steps=100", "--episodes=2", f"--train_dir={tmp_path}", *options])
    (tmp_path / "learning-smoke" / "bench").mkdir(parents=True)
    return bench, args, lines


def test_the_benchmark_reports_the_scripted_defender_and_the_oracle_on_the_simulator(tmp_path, monkeypatch, capsys):
    """Beside the trained policy's simulator return: the scripted reference and the oracle (the ceiling), on as
    many simulator episodes, in result.json and in the summary."""
    bench, (args, overrides), lines = stubbed_bench(
        tmp_path, monkeypatch, ["--cyborg_episodes=0", "--scripted=analyse-restore"]
    )
    result = bench.run_benchmark(args, overrides)
    scripted, oracle = result["scripted_sim_return"], result["oracle_sim_return"]
    assert scripted["policy"] == "analyse-restore" and scripted["episodes"] == oracle["episodes"] == 2
    assert oracle["mean"] > scripted["mean"] and lines["sim, oracle"] == oracle["mean"]
    assert json.loads((tmp_path / "learning-smoke" / "bench" / "result.json").read_text()) == result
    bench.print_summary(result)
    out = capsys.readouterr().out
    assert f"  scripted     {bench._line(scripted)} analyse-restore\n" in out
    assert f"  oracle       {bench._line(oracle)} (sees the true state" in out
    difference = result["sim_minus_scripted"]  # the same two seeds: the mean of the differences
    assert difference["mean"] == pytest.approx(-160.0 - scripted["mean"], abs=0.01) and difference["episodes"] == 2
    assert f"  vs scripted  {bench._paired_line(difference)}\n" in out and difference["se"] >= 0
    assert result["command_mix"] == {c: 0.5 * (c in ("Restore", "Sleep")) for c in cc4.COMMANDS}
    assert "  decisions    Analyse 0.0%, Monitor 0.0%, Remove 0.0%, Restore 50.0%, Sleep 50.0%," in out
    assert result["cyborg_minus_scripted"] is None and out.endswith(
        "\n  vs scripted  -\n" + STEADY + "curves         None\n"
    )


STEADY = "stability      it never fell below an earlier window (windows of 250,000 env steps)\n"


def test_the_benchmark_reports_the_deepest_fall_of_the_training_return(tmp_path, monkeypatch, capsys):
    """Windows of 0.25M env steps (1.25M agent steps): -400, then -300, then -330: a fall of 10%."""
    from cage_sf import plots

    bench, (args, overrides), _ = stubbed_bench(tmp_path, monkeypatch, ["--cyborg_episodes=0", "--scripted=none"])
    steps, values = np.array([0, 1_250_000, 2_500_000, 3_200_000]), np.array([-400.0, -300.0, -320.0, -340.0])
    monkeypatch.setattr(plots, "read_series", lambda run, tag: plots.Series(steps, values, np.zeros(4)))
    result = bench.run_benchmark(args, overrides)
    assert result["largest_fall"] == {
        "share": pytest.approx(0.1),
        "best": [250_000, -300.0],
        "fallen": [500_000, -330.0],
    }
    assert json.loads((tmp_path / "learning-smoke" / "bench" / "result.json").read_text()) == result
    bench.print_summary(result)
    assert (
        "stability      largest fall below an earlier best window: 10.0% (-300 from 250,000 env steps, -330 from "
        "500,000) (windows of 250,000 env steps)\n"
    ) in capsys.readouterr().out


def test_the_benchmark_pairs_the_trained_and_scripted_cyborg_episodes_of_the_same_seeds(tmp_path, monkeypatch, capsys):
    """CybORG's per-episode returns of both, in plan order: trained - scripted episode by episode."""
    from cage_sf import backends, cyborg_evaluation

    bench, (args, overrides), _ = stubbed_bench(tmp_path, monkeypatch, ["--cyborg_episodes=4", "--workers=2"])
    monkeypatch.setattr(bench, "evaluate_policy_sim", lambda args, policy: [-160.0, -165.0])
    monkeypatch.setattr(backends, "cyborg_available", lambda: True)
    plans = []

    def played(returns: list[float], plan) -> cyborg_evaluation.CybORGResult:
        plans.append(plan)
        return cyborg_evaluation.CybORGResult(*mean_and_sem(returns), len(returns), returns, plan)

    trained, scripted = [-100.0, -120.0, -140.0, -160.0], [-110.0, -115.0, -150.0, -170.0]  # differences 10 -5 10 10
    monkeypatch.setattr(
        cyborg_evaluation, "run_cyborg_evaluation", lambda sub, out, plan, workers, desc: played(trained, plan)
    )
    monkeypatch.setattr(cyborg_evaluation, "scripted_cyborg", lambda policy, plan, *_: (played(scripted, plan), True))
    result = bench.run_benchmark(args, overrides)
    assert plans[0] == plans[1] == [(0, 2), (1, 2)]  # the same processes and seeds for both
    assert result["cyborg_minus_scripted"] == {"mean": 6.25, "se": 3.75, "episodes": 4}  # stdev 7.5, / sqrt(4)
    bench.print_summary(result)
    assert "  vs scripted       +6.2 ± 3.8 (trained - scripted ± SE, 4 paired episodes)\n" in capsys.readouterr().out
