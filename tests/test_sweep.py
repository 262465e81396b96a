"""bench/sweep.py: an Optuna study over the learning benchmark, shared through its storage."""

import importlib.util
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from cage_sf.errors import UsageError
from cage_sf.train import resolve_config

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_sweep", REPO / "bench" / "sweep.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preset: smoke\nspace: {a: {log: [1, 2]}}\nbatch: 3\n", "unknown key(s) batch"),
        ("preset: smoke\n", "`space` must map"),
        ("preset: smoke\nspace: {lr: {log: [0, 1]}}\n", "lr must be {log: [lo, hi]} (0 < lo < hi)"),
        ("preset: smoke\nspace: {lr: {uniform: [2, 1]}}\n", "lr must be"),
        ("preset: smoke\nspace: {lr: {normal: [0, 1]}}\n", "lr must be"),
        ("preset: smoke\nspace: {lr: {choice: []}}\n", "lr must be"),
    ],
)
def test_a_bad_sweep_file_is_one_line_naming_the_problem(tmp_path, text, message):
    with pytest.raises(UsageError, match="^s.yaml: ") as error:
        sweep.load_spec(write(tmp_path, text))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_sweep_name_lists_the_sweep_files(capsys):
    assert sweep.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench/sweep.py: error: unknown sweep 'nope'") and "leaderboard" in err


def test_every_point_of_the_shipped_sweep_is_a_valid_training_config():
    """Each choice and both ends of each range, with the fixed settings, resolve as training would."""
    spec = sweep.load_spec("leaderboard")
    for name, dist in spec["space"].items():
        kind, values = next(iter(dist.items()))
        for value in values:
            trial = optuna.trial.FixedTrial(
                {n: (value if n == name else next(iter(d.values()))[0]) for n, d in spec["space"].items()}
            )
            params = sweep.suggest(trial, spec["space"])
            cfg = resolve_config(spec["preset"], sweep.overrides(spec["fixed"] | params))
            assert getattr(cfg, name) == value and cfg.actor == spec["fixed"]["actor"]


def test_a_trials_run_is_named_by_its_parameters():
    """A retried trial (same parameters) resumes the same run; other parameters get another run."""
    assert sweep.run_name("s", {"a": 1, "b": 0.5}) == sweep.run_name("s", {"b": 0.5, "a": 1})
    assert sweep.run_name("s", {"a": 1, "b": 0.5}) != sweep.run_name("s", {"a": 2, "b": 0.5})


@pytest.mark.slow
def test_two_processes_add_trials_to_one_study_and_the_best_becomes_a_preset(tmp_path, monkeypatch):
    """Two sweep processes on one storage: one study of two finished trials, each trained by the learning
    benchmark on its own parameters (here the ones each process queued: the preset's own, and a chosen one),
    and a best.yaml that is a preset training resolves. The first box runs the real benchmark end to end; the
    second a stand-in that writes the benchmark's result file (the slow part once is enough)."""
    monkeypatch.setattr(sweep, "POLL_S", 2.0)
    path = write(
        tmp_path,
        "preset: smoke\nenv_steps: 1000\nepisodes: 2\nselect_episodes: 1\n"
        "space:\n  learning_rate: {log: [1.0e-4, 1.0e-3]}\n",
    )
    stand_in = tmp_path / "stand-in"
    (stand_in / "bench").mkdir(parents=True)
    (stand_in / "bench" / "learning.py").write_text(
        "import json, pathlib, sys\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "out = pathlib.Path(args['train_dir'], args['experiment'], 'bench')\n"
        "out.mkdir(parents=True)\n"
        "result = {'env_steps': 1000, 'minutes': 0.1, 'sim_return': {'mean': -1234.5, 'sem': 10.0}}\n"
        "(out / 'result.json').write_text(json.dumps(result))\n"
    )
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    for box, queued in (("a", "preset"), ("b", "preset,learning_rate=3e-4")):
        if box == "b":
            monkeypatch.setattr(sweep, "REPO", stand_in)
        argv = [path, "--trials=1", f"--storage={storage}", "--study=t", f"--sweep_dir={tmp_path / box}"]
        assert sweep.main([*argv, f"--enqueue={queued}"]) == 0
    study = optuna.load_study(study_name="t", storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    smoke_lr = resolve_config("smoke", []).learning_rate
    assert [t.params["learning_rate"] for t in trials] == [smoke_lr, 3e-4]
    assert sweep.enqueued_params("learning_rate=3e-4", sweep.load_spec(path)) == {"learning_rate": 3e-4}
    for trial in trials:
        assert trial.value < 0 and trial.user_attrs["env_steps"] >= 1000
    table = (tmp_path / "b" / "trials.md").read_text()
    assert table.count("| complete |") == 2
    best = yaml.safe_load((tmp_path / "b" / "best.yaml").read_text())
    assert best["learning_rate"] == max(trials, key=lambda t: t.value).params["learning_rate"]
    cfg = resolve_config(str(tmp_path / "b" / "best.yaml"), [])
    assert cfg.learning_rate == best["learning_rate"] and cfg.batch_size == 500  # the smoke preset's


def test_a_trial_whose_training_diverged_is_pruned_not_scored(tmp_path, monkeypatch):
    """The learning benchmark stops as a diverged training makes it (the run's line, exit 1): the trial is pruned,
    which TPE ranks below every scored trial, and the table says why."""
    line = "training diverged at train step 3: non-finite value_loss and gradients (not applied); try a lower ..."
    fake = tmp_path / "repo"
    (fake / "bench").mkdir(parents=True)
    (fake / "bench" / "learning.py").write_text(
        f"import sys\nprint('== train: ...')\nprint('cage-sf: run failed: {line}', file=sys.stderr)\n"
        "print('bench/learning.py: training exited with status 1', file=sys.stderr)\nsys.exit(1)\n"
    )
    monkeypatch.setattr(sweep, "REPO", fake)
    monkeypatch.setattr(sweep, "POLL_S", 0.1)
    path = write(tmp_path, "preset: smoke\nenv_steps: 1000\nspace:\n  learning_rate: {log: [1.0e-4, 1.0e-3]}\n")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert sweep.main([path, "--trials=1", f"--storage={storage}", "--study=t", f"--sweep_dir={tmp_path}"]) == 0
    [trial] = optuna.load_study(study_name="t", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.value is None
    assert trial.user_attrs["diverged"] == line
    assert "| pruned (diverged) | - |" in (tmp_path / "trials.md").read_text()
    assert not (tmp_path / "best.yaml").exists()


def test_the_script_runs_by_itself_with_help():
    import subprocess

    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sweep.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "shared storage" in result.stdout.lower()


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("preset: smoke\nenv_steps: 10\nspace: {a: {choice: [1]}}\n", ["--trials=0"]),
        ("preset: smoke\nspace: {a: {choice: [1]}}\n", []),
    ],  # fmt: skip
)
def test_no_trials_or_no_budget_is_one_line_and_exit_2(tmp_path, capsys, text, argv):
    assert sweep.main([write(tmp_path, text), *argv, f"--sweep_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err == "bench/sweep.py: error: --trials and env_steps must be at least 1\n"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("lr=1", "expected 'preset' or NAME=VALUE,... of learning_rate"),
        ("learning_rate=0.5", "learning_rate=0.5 is outside the sweep's log [0.0001, 0.001]"),
        ("learning_rate", "expected 'preset'"),
    ],
)
def test_a_bad_enqueue_is_one_line_and_exit_2(tmp_path, capsys, settings, message):
    path = write(tmp_path, "preset: smoke\nenv_steps: 10\nspace:\n  learning_rate: {log: [1.0e-4, 1.0e-3]}\n")
    assert sweep.main([path, f"--enqueue={settings}", f"--sweep_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench/sweep.py: error: --enqueue {settings}: ") and message in err and err.count("\n") == 1


def test_the_table_says_which_trial_retried_an_interrupted_one(tmp_path):
    """An interrupted or dead trial is marked FAIL by Optuna and its parameters run again: the table names the
    retry (run or still queued) instead of calling it failed; a failure that was not retried stays `fail`."""
    text = "preset: smoke\nenv_steps: 10\nspace: {learning_rate: {choice: [1, 2, 3]}}\n"
    spec = sweep.load_spec(write(tmp_path, text))
    study = optuna.create_study(direction="maximize")
    distributions = {"learning_rate": optuna.distributions.CategoricalDistribution([1, 2, 3])}
    for state, lr, value in [("FAIL", 1, None), ("FAIL", 2, None), ("COMPLETE", 1, -400.0)]:
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState[state], params={"learning_rate": lr}, distributions=distributions,
                value=value,
            )
        )  # fmt: skip
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"learning_rate": 3},
                                              distributions=distributions))  # fmt: skip
    study.enqueue_trial({"learning_rate": 3})  # what the sweep does when a trial is interrupted
    sweep.write_tables(study, spec, tmp_path)
    lines = (tmp_path / "trials.md").read_text().splitlines()
    cells = [line.strip("| ").split(" | ") for line in lines if line[:3].strip("| ").isdigit()]
    rows = {int(row[0]): row[1] for row in cells}
    assert rows == {0: "retried as 2", 1: "fail", 2: "complete", 3: "retried as 4", 4: "waiting"}
    assert [row[3] for row in cells if row[0] == "4"] == ["3"]  # the queued trial's parameters are shown
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["learning_rate"] == 1
