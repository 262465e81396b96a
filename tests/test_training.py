"""End-to-end training through ./train.sh on the synthetic backend (seconds; no CybORG needed)."""

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sample_factory.algo.utils.misc import ExperimentStatus
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cage_sf.agent.cc4_memory import MEMORY_VERSION
from cage_sf.train import resolve_config

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
LOADED = re.compile(r"Loaded experiment state at self\.train_step=(\d+), self\.env_steps=(\d+)")


def train(*args, timeout=300) -> subprocess.CompletedProcess:
    return run_in_group([str(REPO / "train.sh"), *args], timeout)


def run_in_group(command: list[str], timeout: float, **popen_kwargs) -> subprocess.CompletedProcess:
    """Run a command in its own process group, so a timeout also ends SF's rollout workers."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **popen_kwargs
    ) as p:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            raise
    return subprocess.CompletedProcess(command, p.returncode, stdout, stderr)


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group may have exited meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir / ".summary" / "0"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def checkpoints(run_dir: Path, prefix="checkpoint") -> list[Path]:
    return sorted((run_dir / "checkpoint_p0").glob(f"{prefix}_*.pth"))


def env_steps(checkpoint: Path) -> int:
    return int(checkpoint.stem.split("_")[2])


@pytest.mark.cyborg
def test_smoke_on_cyborg_completes_and_logs_the_return(tmp_path):
    result = train("smoke", "--backend=cyborg", f"--train_dir={tmp_path}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert env_steps(checkpoints(tmp_path / "smoke")[-1]) >= 20000
    assert scalars(tmp_path / "smoke").get("cc4/eval_return")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The README's quick start as a fresh machine runs it: without CybORG, `auto` is our simulator."""
    train_dir = tmp_path_factory.mktemp("runs")
    result = train("smoke", "--backend=sim", f"--train_dir={train_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return train_dir / "smoke", result


def test_smoke_writes_checkpoint_and_resolved_config(smoke_run):
    run_dir, result = smoke_run
    assert "Gym has been unmaintained" not in result.stdout + result.stderr  # gym's banner (CybORG installed)
    assert env_steps(checkpoints(run_dir)[-1]) >= 20000
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["backend"] == "sim" and saved["with_vtrace"] and saved["recurrence"] == saved["rollout"] == 50
    assert saved["encoder_mlp_layers"] == [256, 256, 128] and saved["batch_size"] == 500


def test_training_writes_learning_curves(smoke_run):
    run_dir, result = smoke_run
    assert (run_dir / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(["cage-sf", "plot", "nope", f"--train_dir={run_dir.parent}"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown experiment 'nope'" in bad.stderr


def test_smoke_logs_evaluation_style_return_and_vtrace_summaries(smoke_run):
    run_dir, _ = smoke_run
    logged = scalars(run_dir)
    for tag in ("cc4/eval_return", "cc4/reward_phase_0", "cc4/reward_phase_2", "cc4/env_fault"):
        assert logged.get(tag), f"{tag} not logged"
    assert logged["cc4/env_fault"][-1] == 0.0
    # without sf_compat's V-trace summary fix the learner dies at its first summary: no train/ scalars at all
    assert logged.get("train/adv_std") and logged.get("train/policy_loss")
    # reward_scale 0.02: the critic's targets are O(1-10), not the raw returns' O(100-1,000) (value losses of
    # 100-2,800 at reward_scale 1 on the simulator, and 2,500x that scale squared here)
    assert np.median(logged["train/value_loss"]) < 500


def test_train_for_seconds_stops_the_run(tmp_path):
    started = time.monotonic()
    result = train(
        "smoke",
        "--backend=synthetic",
        f"--train_dir={tmp_path}",
        "--train_for_seconds=15",
        "--train_for_env_steps=1000000000",
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stopping: reached train_for_seconds=15" in result.stderr + result.stdout
    assert time.monotonic() - started < 200


def wait_for(condition, seconds: float, what: str, process: subprocess.Popen):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"training exited (rc {process.returncode}) before {what}")
        time.sleep(1)
    kill_group(process)
    pytest.fail(f"no {what} within {seconds} s")


def interrupt(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=120) == ExperimentStatus.INTERRUPTED, "an interrupted run should stop cleanly"


@pytest.mark.parametrize("backend", ["synthetic", pytest.param("cyborg", marks=pytest.mark.cyborg)])
def test_killed_run_resumes_from_last_checkpoint(tmp_path, backend):
    """`kill` mid-run (after a best checkpoint, whose numpy score torch>=2.6 refuses to load), then the same
    command again: train step and env steps continue from the last checkpoint. The run is far longer than the
    test, so however fast the machine, both runs are interrupted mid-way. The fresh run starts from an imitation
    checkpoint (--imitate); the resumed one does not imitate again."""
    command = [
        str(REPO / "train.sh"),
        "smoke",
        f"--backend={backend}",
        f"--train_dir={tmp_path}",
        "--train_for_env_steps=1000000000",
        "--imitate=analyse-restore",
        "--imitate_episodes=8",
        "--imitate_epochs=1",
        "--save_every_sec=3",  # checkpoints soon after the best one and after the resume: a short test
        "--save_best_every_sec=2",
    ]
    run_dir = tmp_path / "smoke"

    def best_then_regular_checkpoint() -> bool:
        best = checkpoints(run_dir, "best")
        return bool(best) and any(env_steps(c) > env_steps(best[0]) for c in checkpoints(run_dir))

    first_log = tmp_path / "first.log"
    with first_log.open("w") as sink:
        first = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(best_then_regular_checkpoint, 400, "checkpoint after a best checkpoint", first)
        interrupt(first)
    assert "imitation: the teacher scored" in first_log.read_text()
    assert LOADED.search(first_log.read_text()).groups() == ("0", "0")  # SF's learner started from it
    last = checkpoints(run_dir)[-1]

    log = tmp_path / "second.log"
    with log.open("w") as sink:
        second = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)

        def resumed() -> re.Match | None:
            return LOADED.search(log.read_text())

        wait_for(resumed, 300, "'Loaded experiment state' line in the second run", second)
        train_step, steps = map(int, resumed().groups())
        assert steps >= env_steps(last) > 0 and train_step > 0
        wait_for(lambda: int(checkpoints(run_dir)[-1].stem.split("_")[1]) > train_step, 300, "new checkpoint", second)
        interrupt(second)
    assert env_steps(checkpoints(run_dir)[-1]) > steps
    assert "imitation:" not in log.read_text()


def test_a_run_stopped_while_imitating_ends_cleanly_and_saves_nothing(tmp_path):
    log = tmp_path / "run.log"
    command = [str(REPO / "train.sh"), "smoke", "--backend=synthetic", f"--train_dir={tmp_path}"]
    command += ["--imitate=analyse-restore", "--imitate_episodes=400"]  # minutes of demonstrations
    with log.open("w") as sink:
        run = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: "imitation: 400 simulator episodes" in log.read_text(), 120, "imitation to start", run)
        interrupt(run)
    assert "interrupted while imitating: nothing was saved" in log.read_text()
    assert "Traceback" not in log.read_text()
    assert not checkpoints(tmp_path / "smoke")


def trained_returns(tmp_path, *overrides: str, timeout: float = 300) -> list[float]:
    """A smoke run with these overrides (no periodic checkpoints): its evaluation-style return windows. Sampling
    and learning alternate (`--async_rl=False`, one rollout = 4 batches), so what is learned per sample does not
    depend on how busy the box is: asynchronously, on a box shared with other tests, the messages run stayed at
    chance (250) where it reaches 300+ on an idle one."""
    sync = ["--async_rl=False", "--num_batches_per_epoch=4"]
    result = train("smoke", f"--train_dir={tmp_path}", "--save_every_sec=600", *sync, *overrides, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return scalars(tmp_path / "smoke")["cc4/eval_return"]


def test_decisions_get_credit_for_rewards_earned_while_their_action_runs(tmp_path):
    """On the delayed-payoff env, Restore (5 steps) costs 1 at once and pays 2.4 while the agent is busy; Analyse
    pays 0.1 at once. With busy agents inactive (the old adapter) the busy window's rewards never reach the
    decision and training drifts to Analyse (eval return ~20, from ~55 at random); with busy agents active and
    limited to Sleep, it learns Restore (always-Restore scores 139): the mean of the last three windows after 150k
    steps at lr 0.004 was 73.9-82.4 in four runs on 2 busy cores (one under the full suite). The preset's lr needs
    twice the steps for the same curve."""
    returns = trained_returns(
        tmp_path, "--backend=delayed-payoff", "--learning_rate=0.004", "--train_for_env_steps=150000"
    )
    assert np.mean(returns[-3:]) > 65, returns  # above random (55) and far above the busy-inactive adapter (20)


def test_learned_messages_carry_what_only_their_sender_sees(tmp_path):
    """On the signalling env, only a message from blue_agent_0 whose first bit is the secret it alone sees pays
    (1 per step): messages that ignore the secret score ~250 per episode, the learned ones rise towards 500.
    This checks the path end to end: the tuple action space, the sampled bits through the adapter into the
    backend's `messages`, and the message heads trained by V-trace. (A higher learning rate than the preset's
    keeps the test short. The runs start learning between 200k and 300k agent steps: at 200k one run in three was
    still at chance; at 400k three of three ended at 363-430.)"""
    returns = trained_returns(
        tmp_path, "--backend=signalling", "--messages=True", "--learning_rate=0.005", "--train_for_env_steps=400000"
    )
    # windows of 10 episodes; chance: 250 ± 4. A learned run's windows swing by ~50: the best of its last three,
    # so that one low window does not fail a run that learned
    assert max(returns[-3:]) > 300, returns


def test_a_run_trained_on_another_memory_layout_is_not_resumed(tmp_path):
    """Its networks read the memory's features by position: resuming it under other features would go on
    training on wrong inputs. Refused in one line (exit 2) before anything starts."""
    fresh = resolve_config("smoke", ["--backend=synthetic"])
    assert fresh.memory_version == MEMORY_VERSION  # what a fresh run's config.json records
    (tmp_path / "smoke").mkdir()
    saved = {k: v for k, v in vars(fresh).items() if k != "memory_version"}
    (tmp_path / "smoke" / "config.json").write_text(json.dumps(saved))
    result = train("smoke", "--backend=synthetic", f"--train_dir={tmp_path}", timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "cannot resume run" in line and "from before memory versions, but this code keeps version" in line, line
    assert sorted(p.name for p in (tmp_path / "smoke").iterdir()) == ["config.json"]


def test_a_resumed_run_keeps_its_saved_settings_over_its_presets_and_takes_what_is_typed(tmp_path, capsys):
    """Sample Factory lays the command line over a resumed run's config.json; the preset's values reach it as
    command-line arguments, so without `keep_saved_settings` a preset edited between interrupt and resume would
    silently change the run."""
    from sample_factory.cfg.arguments import load_from_checkpoint

    from cage_sf.train import keep_saved_settings

    start = ["--backend=synthetic", f"--train_dir={tmp_path}"]
    saved = resolve_config("smoke", [*start, "--learning_rate=0.001", "--gamma=0.95"])
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "config.json").write_text(json.dumps(vars(saved)))
    typed = [*start, "--gamma=0.9"]
    preset_lr = resolve_config("smoke", typed).learning_rate
    assert preset_lr != 0.001
    assert load_from_checkpoint(resolve_config("smoke", typed)).learning_rate == preset_lr  # SF alone: the preset's
    cfg = resolve_config("smoke", typed)
    keep_saved_settings(cfg, typed)
    loaded = load_from_checkpoint(cfg)
    assert (loaded.learning_rate, loaded.gamma) == (0.001, 0.9)  # the run's own, and what was typed
    [line] = capsys.readouterr().out.splitlines()
    assert line.endswith("with its saved settings; changed here: --gamma=0.9, --backend=synthetic"), line
