"""cage-sf export: the submission reproduces the trained policy and CybORG's evaluation loads it."""

import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cage_sf import cc4
from cage_sf.adapter import CC4SampleFactoryEnv
from cage_sf.agent.cc4_memory import MEMORY_VERSION
from cage_sf.backends import make_backend
from cage_sf.errors import UsageError
from cage_sf.export import export
from cage_sf.models import CC4ActorCritic, model_config
from cage_sf.train import resolve_config

REPO = Path(__file__).resolve().parent.parent


def make_run(tmp_path_factory, overrides: list[str]):
    """A run directory as training leaves it: config.json and a checkpoint (random weights)."""
    run = tmp_path_factory.mktemp("runs") / "smoke"
    (run / "checkpoint_p0").mkdir(parents=True)
    cfg = resolve_config("smoke", ["--backend=synthetic", *overrides])
    (run / "config.json").write_text(json.dumps(vars(cfg)))
    env = CC4SampleFactoryEnv(lambda: make_backend("synthetic"), step_timeout_s=5, messages=cfg.messages)
    torch.manual_seed(0)
    model = CC4ActorCritic(env.observation_space, env.action_space, cfg)
    torch.save({"model": model.state_dict(), "env_steps": 10}, run / "checkpoint_p0" / "checkpoint_000000001_10.pth")
    return run, model.eval()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return make_run(tmp_path_factory, [])


@pytest.fixture(scope="module")
def entity_run(tmp_path_factory):
    return make_run(tmp_path_factory, ["--actor=entity"])


@pytest.fixture(scope="module")
def messaging_runs(tmp_path_factory):
    return {actor: make_run(tmp_path_factory, [f"--actor={actor}", "--messages=True"]) for actor in ("mlp", "entity")}


class Recorder:
    """A backend proxy that keeps what the backend last returned: the raw observations and masks."""

    def __init__(self, backend):
        self.backend = backend

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def reset(self, seed=None):
        self.obs, self.info = self.backend.reset(seed=seed)
        return self.obs, self.info

    def step(self, actions, messages=None):
        result = self.backend.step(actions, messages)
        self.obs, self.info = result[0], result[4]
        return result


def import_submission_agent(path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(path))
    sys.modules.pop("cc4_agent", None)
    return importlib.import_module("cc4_agent")


@pytest.mark.parametrize("run_fixture", ["trained_run", "entity_run", "messaging_runs"])
def test_exported_greedy_agents_play_exactly_as_the_trained_model(run_fixture, request, tmp_path, monkeypatch):
    """The exported agents (their own memory, own busy tracking, own copy of the networks) and the training
    adapter + model, side by side on the same simulator episodes: the same action for every agent at every step,
    for the MLP and the entity actor, and with messages the same 8 bits sent every step (busy or not)."""
    runs = request.getfixturevalue(run_fixture)
    for actor, (run, model) in runs.items() if isinstance(runs, dict) else [("", runs)]:
        out = export(str(run), tmp_path / f"submission{actor}", checkpoint="latest", mode="greedy")
        agents = import_submission_agent(out, monkeypatch).load_agents("cc4_agent")
        findings = assert_plays_as_the_model(agents, model)
        if run_fixture == "trained_run":  # its greedy agents analyse infected hosts: the findings are compared too
            assert findings > 0


def assert_plays_as_the_model(agents: dict, model: CC4ActorCritic) -> int:
    """Returns how often an agent's Analyse found red's files on the way (the agents read it from the env)."""
    decisions, findings = [], 0
    for seed in range(3):
        recorder = Recorder(make_backend("sim", seed=seed))
        env = CC4SampleFactoryEnv(lambda recorder=recorder: recorder, step_timeout_s=5, messages=model.messages)
        for agent in agents.values():
            agent.attach(recorder)
        encoded, _ = env.reset()
        for _ in range(150):
            batch = {k: torch.as_tensor(np.stack([e[k] for e in encoded])) for k in encoded[0]}
            with torch.no_grad():
                logits = model(model.normalize_obs(batch), torch.zeros(len(encoded), 2))["action_logits"]
            masks = {a: np.asarray(recorder.info[a]["action_mask"]) for a in cc4.AGENTS}
            exported = [agents[a].get_action(recorder.obs[a], mask=masks[a]) for a in cc4.AGENTS]
            assert exported == logits[:, : len(masks[cc4.AGENTS[-1]])].argmax(dim=1).tolist()
            decisions += [a for a, e in zip(cc4.AGENTS, encoded, strict=True) if e["valid_actions"].sum() > 1]
            if model.messages:
                sent = np.stack([agents[a].message for a in cc4.AGENTS])
                np.testing.assert_array_equal(sent, logits[:, 242:].view(5, -1, 2).argmax(dim=2).numpy())
                exported = np.concatenate([np.array(exported)[:, None], sent], axis=1)
            encoded, *_ = env.step(exported)
            findings += sum(recorder.analysis(a).any() for a in cc4.AGENTS)
    assert len(decisions) > 500 and set(decisions) == set(cc4.AGENTS)  # free decisions of both agent types
    return findings


def test_a_run_without_host_memory_exports_agents_without_it(trained_run):
    run, _ = trained_run
    cfg = json.loads((run / "config.json").read_text())
    assert [layout["host_memory"] for layout in model_config(cfg)["layouts"]] == [True, True]
    assert [layout["host_memory"] for layout in model_config(cfg | {"host_memory": False})["layouts"]] == [False] * 2


def test_exported_agent_sleeps_while_its_action_runs(trained_run, tmp_path, monkeypatch):
    run, _ = trained_run
    out = export(str(run), tmp_path / "s", checkpoint="latest", mode="greedy")
    agents = import_submission_agent(out, monkeypatch).load_agents("cc4_agent")
    agent, mask, rng = agents["blue_agent_4"], np.ones(242, bool), np.random.default_rng(0)
    durations = []
    for _ in range(20):
        obs = rng.integers(0, 2, 210)
        action = agent.get_action(obs, mask=mask)  # the agent is free: a real decision
        durations.append(int(cc4.action_durations(cc4.LARGE)[action]))
        sleeps = [agent.get_action(obs, mask=mask) for _ in range(durations[-1] - 1)]
        assert sleeps == [cc4.sleep_action(cc4.LARGE)] * (durations[-1] - 1)
    assert max(durations) > 1


def test_export_chooses_checkpoint_and_action_mode_by_simulator_score(trained_run, tmp_path):
    """Default export scores every kept checkpoint (and the best one) greedy and sampled on the same simulator
    episodes and ships the top one, with its score on episodes that did not choose it."""
    from cage_sf.export import _sim_returns, actor_tensors

    run, _ = trained_run
    best = run / "checkpoint_p0" / "best_000000002_20_true_objective_-100.000.pth"
    env = CC4SampleFactoryEnv(lambda: make_backend("synthetic"), step_timeout_s=5)
    torch.manual_seed(1)
    other = CC4ActorCritic(env.observation_space, env.action_space, resolve_config("smoke", []))
    torch.save({"model": other.state_dict(), "env_steps": 10}, best)
    try:
        out = export(str(run), tmp_path / "auto", select_episodes=2)
        config = json.loads((out / "model.json").read_text())
        run_config = model_config(json.loads((run / "config.json").read_text()))
        chosen = actor_tensors(run / "checkpoint_p0" / config["source"]["checkpoint"], run_config)
    finally:
        best.unlink()
    rows = config["source"]["selection"]
    assert {(r["checkpoint"], r["mode"]) for r in rows} == {
        (c, m) for c in ("checkpoint_000000001_10.pth", best.name) for m in ("greedy", "sample")
    }
    assert [r["mean"] for r in rows] == sorted((r["mean"] for r in rows), reverse=True)
    assert config["source"]["checkpoint"] == rows[0]["checkpoint"] and config["greedy"] == (rows[0]["mode"] == "greedy")
    fresh = config["source"]["fresh"]  # the choice scored again on the next episodes, which did not choose it
    assert (fresh["seed"], fresh["episodes"]) == (1_000_002, 2)
    returns = _sim_returns(chosen, run_config, config["greedy"], 2, 1_000_002, host_memory=True)
    assert fresh["mean"] == pytest.approx(np.mean(returns))


def test_selection_skips_the_best_checkpoint_when_a_regular_one_holds_its_train_step(tmp_path):
    """SF saves the best and a regular checkpoint of one train step under both names: scoring both is the same
    weights twice. A best of its own step stays a candidate."""
    from cage_sf.export import candidate_checkpoints

    folder = tmp_path / "checkpoint_p0"
    folder.mkdir()
    regular = ["checkpoint_000000005_50.pth", "checkpoint_000000009_90.pth"]
    for name in [*regular, "best_000000009_90_true_objective_-1.000.pth"]:
        (folder / name).touch()
    assert [p.name for p in candidate_checkpoints(tmp_path)] == regular
    (folder / "best_000000007_70_true_objective_-2.000.pth").touch()
    (folder / "best_000000009_90_true_objective_-1.000.pth").unlink()
    assert [p.name for p in candidate_checkpoints(tmp_path)][-1] == "best_000000007_70_true_objective_-2.000.pth"


def test_selection_plays_every_candidate_on_the_episodes_evaluate_plays_on_that_seed(trained_run):
    """Two copies of one checkpoint score the same on every episode (paired difference 0 ± 0): every candidate
    meets the same seeds. The side-by-side scoring plays what the exported agents play, episode by episode."""
    from cage_sf.agent.cc4_agent import CC4Agent, CC4Policy
    from cage_sf.evaluate import play
    from cage_sf.export import _sim_returns, actor_tensors, select

    run, _ = trained_run
    config = model_config(json.loads((run / "config.json").read_text()))
    tensors = actor_tensors(run / "checkpoint_p0" / "checkpoint_000000001_10.pth", config)
    rows = select({Path("a.pth"): tensors, Path("b.pth"): tensors}, ["greedy"], config, episodes=2, seed=5)
    assert [(r["difference"], r["difference_se"]) for r in rows] == [(0.0, 0.0)] * 2
    assert rows[0]["mean"] == rows[1]["mean"] and rows[0]["sem"] > 0  # the two episodes differ
    agents = {a: CC4Agent(a, CC4Policy(config, tensors), greedy=True) for a in cc4.AGENTS}
    assert _sim_returns(tensors, config, True, 2, 5, host_memory=True) == play(agents, "sim", 2, seed=5).returns


def test_zip_layout_loads_with_zipimport(trained_run, tmp_path, monkeypatch):
    run, _ = trained_run
    archive = export(str(run), tmp_path / "z", checkpoint="latest", mode="greedy", as_zip=True)
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"submission/submission.py", "submission/cc4_agent.py", "submission/cc4_memory.py"} <= names
    assert "submission/model.safetensors" in names
    monkeypatch.syspath_prepend(str(archive))
    for module in [m for m in sys.modules if m == "submission" or m.startswith("submission.")]:
        monkeypatch.delitem(sys.modules, module)
    agents = importlib.import_module("submission.cc4_agent").load_agents("submission.cc4_agent")
    assert 0 <= agents["blue_agent_0"].get_action(np.zeros(92), mask=np.ones(82, bool)) < 82


def test_bad_inputs(trained_run, tmp_path):
    run, _ = trained_run
    with pytest.raises(UsageError, match="unknown experiment 'nope'"):
        export("nope", tmp_path / "a", train_dir=str(run.parent))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(UsageError, match="is not empty"):
        export(str(run), tmp_path / "full", checkpoint="latest", mode="greedy")
    misfit = tmp_path / "misfit"
    misfit.mkdir()
    cfg = json.loads((run / "config.json").read_text()) | {"encoder_mlp_layers": [64, 64]}
    (misfit / "config.json").write_text(json.dumps(cfg))
    (misfit / "checkpoint_p0").mkdir()
    for checkpoint in (run / "checkpoint_p0").iterdir():
        (misfit / "checkpoint_p0" / checkpoint.name).write_bytes(checkpoint.read_bytes())
    with pytest.raises(UsageError, match="does not fit the run's model configuration"):
        export(str(misfit), tmp_path / "b", checkpoint="latest", mode="greedy")
    (misfit / "config.json").write_text(json.dumps(cfg | {"encoder_mlp_layers": [256, 256, 128], "actor": "entity"}))
    with pytest.raises(UsageError, match="does not fit the run's model configuration.*Missing key"):
        export(str(misfit), tmp_path / "b", checkpoint="latest", mode="greedy")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot read checkpoint"):
        export(str(run), tmp_path / "c", checkpoint=str(corrupt))
    with pytest.raises(UsageError, match="no best checkpoint"):
        export(str(run), tmp_path / "d", checkpoint="best")
    with pytest.raises(UsageError, match="select_episodes must be at least 1"):
        export(str(run), tmp_path / "e", select_episodes=0)


@pytest.mark.cyborg
@pytest.mark.slow
def test_cyborg_evaluation_scores_an_exported_smoke_checkpoint(tmp_path):
    train = subprocess.run([str(REPO / "train.sh"), "smoke", "--backend=synthetic", f"--train_dir={tmp_path}"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    submission = export(str(tmp_path / "smoke"), tmp_path / "submission", checkpoint="latest", mode="greedy")
    evaluation = [sys.executable, "-m", "CybORG.Evaluation.evaluation", "--max-eps", "2"]
    result = subprocess.run(
        [*evaluation, str(submission), str(tmp_path / "eval")], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["submission"]["author"] == "cage-sf"


def test_evaluate_writes_official_summary_returns_and_plot(trained_run, tmp_path, capsys):
    from cage_sf.evaluate import evaluate

    run, _ = trained_run
    submission = export(str(run), tmp_path / "s", checkpoint="latest", mode="greedy", name="mine")
    summary = evaluate(submission, episodes=3, seed=5, backend="sim", out=tmp_path / "eval")
    written = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert written == summary and set(written) == {"submission", "parameters", "time", "reward", "agents"}
    assert written["submission"]["author"] == "mine" and written["parameters"]["max_episodes"] == 3
    episodes = json.loads((tmp_path / "eval" / "episodes.json").read_text())
    assert len(episodes["returns"]) == 3 and written["reward"]["mean"] == pytest.approx(np.mean(episodes["returns"]))
    assert episodes["returns"] == pytest.approx([sum(p) for p in episodes["phase_sums"]])
    assert episodes["modes"]["greedy"] == episodes["returns"] and len(episodes["modes"]["sample"]) == 3
    assert (tmp_path / "eval" / "returns.png").read_bytes()[:4] == b"\x89PNG"
    assert [sum(mix.values()) for mix in episodes["command_mixes"]] == pytest.approx([1.0] * 3)
    assert "decisions by command (greedy): Analyse " in capsys.readouterr().out


def test_evaluate_versus_pairs_a_scripted_defender_on_the_same_seeded_episodes(trained_run, tmp_path, capsys):
    from cage_sf.evaluate import evaluate
    from cage_sf.scripted import policy_returns
    from cage_sf.stats import paired_difference

    run, _ = trained_run
    submission = export(str(run), tmp_path / "s", checkpoint="latest", mode="greedy")
    summary = evaluate(submission, 3, seed=7, backend="sim", out=tmp_path / "e", versus="analyse-restore")
    returns = json.loads((tmp_path / "e" / "episodes.json").read_text())["returns"]
    scripted = policy_returns("analyse-restore", 3, seed=7)
    difference, se = paired_difference(returns, scripted)
    assert summary["versus"] == pytest.approx(
        {"policy": "analyse-restore", "return": np.mean(scripted), "sem": summary["versus"]["sem"],
         "difference": difference, "difference_se": se}
    )  # fmt: skip
    assert f"submission - analyse-restore: {difference:+.1f} ± {se:.1f}" in capsys.readouterr().out
    with pytest.raises(UsageError, match="needs --seed"):
        evaluate(submission, 1, seed=None, backend="sim", out=tmp_path / "e2", versus="analyse-restore")
    with pytest.raises(UsageError, match="unknown policy"):
        evaluate(submission, 1, seed=1, backend="sim", out=tmp_path / "e3", versus="no-such-script")
    assert not (tmp_path / "e3").exists()


def test_evaluate_versus_another_submission_plays_it_as_exported_on_the_same_seeds(trained_run, entity_run, tmp_path):
    from cage_sf import cli
    from cage_sf.evaluate import evaluate

    mlp = export(str(trained_run[0]), tmp_path / "mlp", checkpoint="latest", mode="greedy")
    entity = export(str(entity_run[0]), tmp_path / "entity", checkpoint="latest", mode="greedy")
    alone = ["evaluate", str(entity), "--episodes=3", "--seed=7", "--backend=sim", f"--out={tmp_path / 'alone'}"]
    assert cli.main([*alone, "--workers=1", "--exported_mode_only"]) == 0
    summary = evaluate(mlp, 3, seed=7, backend="sim", out=tmp_path / "pair", versus=str(entity))
    mine = json.loads((tmp_path / "pair" / "episodes.json").read_text())["returns"]
    played_alone = json.loads((tmp_path / "alone" / "episodes.json").read_text())
    assert set(played_alone["modes"]) == {"greedy"}  # --exported_mode_only: no sampled pass
    theirs = played_alone["returns"]
    assert mine != theirs  # two different policies, so the pairing below is not trivially 0
    assert summary["versus"]["policy"] == str(entity)
    assert summary["versus"]["return"] == pytest.approx(np.mean(theirs))
    assert summary["versus"]["difference"] == pytest.approx(np.mean(mine) - np.mean(theirs))


def test_evaluate_splits_seeded_episodes_over_processes_with_the_results_of_one(trained_run, tmp_path):
    """Each seeded episode is its own backend and its own seed for sampled actions: played by 2 processes, the
    greedy and sampled returns, reward per phase and command mix of every episode are those of one process, in
    episode order."""
    from cage_sf.evaluate import evaluate

    submission = export(str(trained_run[0]), tmp_path / "s", checkpoint="latest", mode="greedy")
    for workers in (1, 2):
        evaluate(submission, 4, seed=11, backend="sim", out=tmp_path / str(workers), workers=workers)
    one, two = (json.loads((tmp_path / name / "episodes.json").read_text()) for name in ("1", "2"))
    assert len(set(one["returns"])) > 1  # distinct episodes: a mix-up of their order would show
    for key in ("returns", "phase_sums", "command_mixes", "modes"):
        assert two[key] == one[key]


def test_a_second_submission_in_one_process_runs_its_own_modules(trained_run, tmp_path):
    """Submissions import their networks and memory as top-level modules: loading another must not reuse the
    first one's (they may come from different versions of the code)."""
    from cage_sf.evaluate import load_agents

    first = export(str(trained_run[0]), tmp_path / "first", checkpoint="latest", mode="greedy")
    second = export(str(trained_run[0]), tmp_path / "second", checkpoint="latest", mode="greedy")
    with (second / "cc4_networks.py").open("a") as networks:
        networks.write("\nLOADED_FROM = 'second'\n")
    load_agents(first)
    load_agents(second)
    assert sys.modules["cc4_networks"].LOADED_FROM == "second"


def test_evaluate_refuses_corrupted_weights_other_memory_versions_and_non_submissions(trained_run, tmp_path):
    """A submission whose networks read another memory layout than its runtime keeps would play on wrong
    features (same widths, other meanings) or fail with a tensor-shape dump: refused in one line."""
    from cage_sf.evaluate import evaluate

    run, _ = trained_run
    submission = export(str(run), tmp_path / "s", checkpoint="latest", mode="greedy")
    manifest = json.loads((submission / "model.json").read_text())
    assert manifest["memory"] == MEMORY_VERSION
    (submission / "model.json").write_text(json.dumps(manifest | {"memory": MEMORY_VERSION - 1}))
    with pytest.raises(UsageError, match=f"memory version {MEMORY_VERSION - 1}, but this code keeps version"):
        evaluate(submission, episodes=1, seed=0, backend="sim", out=tmp_path / "e")
    (submission / "model.json").write_text(json.dumps(manifest))
    older = tmp_path / "older"  # a run trained before the memory's version was recorded: not exported
    older.mkdir()
    config = json.loads((run / "config.json").read_text())
    (older / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "memory_version"}))
    with pytest.raises(UsageError, match="cannot export run .* trained on agent memory from before memory versions"):
        export(str(older), tmp_path / "o", checkpoint="latest", mode="greedy")
    (submission / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(UsageError, match="cannot load the submission"):
        evaluate(submission, episodes=1, seed=0, backend="sim", out=tmp_path / "e")
    with pytest.raises(UsageError, match="is not a cage-sf submission"):
        evaluate(tmp_path, episodes=1, seed=0, backend="sim", out=tmp_path / "e")


def test_export_and_evaluate_refuse_nonfinite_weights_with_one_line_and_exit_2(trained_run, tmp_path, capsys):
    """A diverged run's checkpoint (cage_sf.divergence no longer writes one; older runs did), and a submission
    exported from one: one line naming the file, exit 2, nothing written."""
    from safetensors.torch import load_file, save_file

    from cage_sf import cli

    run, model = trained_run
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    name = next(name for name in state if name.startswith("actors.") and name.endswith("weight"))
    state[name].view(-1)[0] = float("nan")
    diverged = tmp_path / "checkpoint_000000009_90.pth"
    torch.save({"model": state, "env_steps": 90}, diverged)
    out = tmp_path / "out"
    assert cli.main(["export", str(run), f"--out={out}", f"--checkpoint={diverged}", "--mode=greedy"]) == 2
    assert capsys.readouterr().err == (
        f"cage-sf: error: {diverged} holds non-finite weights (1 of {len(state)} tensors, e.g. {name}): its training "
        "diverged; export an earlier checkpoint (cage-sf export --checkpoint=PATH)\n"
    )
    assert not out.exists()

    submission = export(str(run), tmp_path / "s", checkpoint="latest", mode="greedy")
    weights = submission / "model.safetensors"
    tensors = load_file(weights)
    tensors[name][:] = float("inf")
    save_file(tensors, weights)
    assert cli.main(["evaluate", str(submission), "--episodes=1", "--backend=sim", f"--out={out}"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"cage-sf: error: {weights} holds non-finite weights (1 of ") and "diverged" in line
    assert not out.exists()


@pytest.mark.cyborg
def test_a_submission_with_messages_sends_them_through_cyborgs_evaluation_loop(messaging_runs, tmp_path, monkeypatch):
    """evaluation.py calls `step(actions)` only: the submission's `wrap` must carry the messages the agents chose
    into CybORG, where every agent then sees the other four's bits."""
    from CybORG import CybORG
    from CybORG.Agents import FiniteStateRedAgent
    from CybORG.Agents.SimpleAgents.EnterpriseGreenAgent import EnterpriseGreenAgent
    from CybORG.Simulator.Scenarios import EnterpriseScenarioGenerator

    run, _ = messaging_runs["entity"]
    out = export(str(run), tmp_path / "submission", checkpoint="latest", mode="sample")
    monkeypatch.syspath_prepend(str(out))
    for module in ("submission", "cc4_agent", "cc4_memory", "cc4_networks"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    submission = importlib.import_module("submission").Submission
    scenario = EnterpriseScenarioGenerator(
        blue_agent_class=None, green_agent_class=EnterpriseGreenAgent, red_agent_class=FiniteStateRedAgent, steps=500
    )
    wrapped = submission.wrap(CybORG(scenario, "sim", seed=0))
    observations, _ = wrapped.reset()
    sent_any = False
    for _ in range(5):  # evaluation.py's loop
        actions = {name: agent.get_action(observations[name], wrapped.action_space(name))
                   for name, agent in submission.AGENTS.items() if name in wrapped.agents}  # fmt: skip
        observations, *_ = wrapped.step(actions)
        sent = {name: agent.message for name, agent in submission.AGENTS.items()}
        sent_any |= any(bits.any() for bits in sent.values())
        for name in cc4.AGENTS:
            slots = cc4.agent_layout(cc4.agent_type(name))["messages"]
            expected = np.concatenate([sent[other] for other in cc4.AGENTS if other != name])
            np.testing.assert_array_equal(np.asarray(observations[name])[slots], expected)
    assert sent_any
