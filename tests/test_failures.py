"""Every failure path ends fast with one line on stderr: faults injected into real training runs, bad CLI input.

Without cage_sf/run_guard.py a failing learner, env or model leaves the run at 0 FPS until killed (these tests
then time out), and SF's tracebacks and log lines land on stderr.
"""

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from signal_slot.signal_slot import EventLoop
from test_training import run_in_group

from cage_sf import run_guard
from cage_sf.divergence import nonfinite_tensors

REPO = Path(__file__).resolve().parent.parent
BOUND_S = 60  # the acceptance bound on the 2-core box


def run(command: list[str], fault: str | None = None, timeout: float = 3 * BOUND_S) -> subprocess.CompletedProcess:
    """In its own process group, so a run that hangs (the code before the fix) takes its SF processes with it."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if fault:
        env["CAGE_SF_FAULT"] = fault
    return run_in_group(command, timeout, cwd=REPO, env=env)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "line", "traceback_logged"),
    [
        ("learner", r"learner_proc0 failed: ValueError: Invalid learning rate: -1\.0", True),
        ("env", r"rollout_proc[01] failed: RuntimeError: injected env fault", True),  # whichever worker is first
        ("env-everywhere", r"making the env failed: RuntimeError: injected env fault", True),
        ("model", r"learner_proc0 failed: RuntimeError: injected model fault", True),
        ("stall", r"no frames collected for 5 s \(--stall_timeout_s\)", False),
    ],
)
def test_a_failing_run_ends_fast_with_one_line(tmp_path, fault, line, traceback_logged):
    started = time.monotonic()
    args = ["smoke", "--backend=synthetic", f"--train_dir={tmp_path}"]
    args += {"learner": ["--learning_rate=-1"], "stall": ["--stall_timeout_s=5"]}.get(fault, [])
    result = run([sys.executable, str(REPO / "tests" / "fault_injection.py"), *args], fault)
    assert time.monotonic() - started < BOUND_S, result.stdout[-3000:]
    assert result.returncode == 1
    assert re.fullmatch(f"cage-sf: run failed: {line}\n", result.stderr), result.stderr[-3000:]
    assert "Traceback" not in result.stdout
    assert ("Traceback" in (tmp_path / "smoke" / "sf_log.txt").read_text()) == traceback_logged


@pytest.mark.slow
def test_a_configuration_sample_factory_refuses_ends_with_its_reasons_on_one_line(tmp_path):
    """SF's own check refuses sync mode whose batch is not a multiple of a rollout, logging why before the run's
    log file exists: the one line carries its reasons (it used to point at that missing file)."""
    args = ["smoke", "--backend=synthetic", f"--train_dir={tmp_path}", "--async_rl=False"]
    result = run([str(REPO / "train.sh"), *args])
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("cage-sf: run failed: Sample Factory refused the configuration: In sync mode"), line
    assert line.endswith("Ratio is 0.25 (should be a positive integer)"), line


def test_a_stop_waiting_only_on_dead_processes_ends_without_the_grace_period(monkeypatch):
    """After a learner process dies, SF still waits for its batcher thread's stop message, which never comes: the
    guard gives up as soon as no component process is alive (a failing learner then exits in seconds, not 10 s)."""
    monkeypatch.setattr(run_guard, "STOP_GRACE_S", 3600.0)
    stopped = threading.Event()

    class Runner:
        event_loop = EventLoop("test_runner_loop")
        msg_handlers: dict = {}
        components_to_stop = ["Batcher_0"]
        all_components_stopped = type("Signal", (), {"emit": staticmethod(stopped.set)})

    guard = run_guard.RunGuard(Runner(), stall_timeout_s=60)
    alive = [True]
    process = type("Process", (), {"is_alive": lambda self: alive[0]})()
    monkeypatch.setattr(guard, "_component_processes", lambda: [process])
    monkeypatch.setattr(run_guard, "_kill_children", lambda: None)
    watcher = threading.Thread(target=guard._end_stuck_stop, daemon=True)
    watcher.start()
    assert not stopped.wait(0.5)  # a live process may still send its stop message
    alive[0] = False
    watcher.join(timeout=30)
    assert stopped.is_set() and not watcher.is_alive()


@pytest.mark.slow
def test_a_diverging_run_stops_at_its_first_nonfinite_update_and_keeps_its_last_good_checkpoint(tmp_path):
    """Once a trained checkpoint exists the value loss turns infinite: the run stops at that very update with one
    line (the step, the non-finite terms, what to lower), and every checkpoint on disk is finite and older."""
    started = time.monotonic()
    args = ["smoke", "--backend=synthetic", f"--train_dir={tmp_path}", "--save_every_sec=2"]
    result = run([sys.executable, str(REPO / "tests" / "fault_injection.py"), *args], "diverge")
    assert time.monotonic() - started < BOUND_S, result.stdout[-3000:]
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.splitlines()  # nothing else on stderr (torch warned there once per run)
    step = re.fullmatch(
        r"cage-sf: run failed: training diverged at train step (\d+): non-finite value_loss and gradients \(not "
        r"applied\); try a lower --learning_rate \(now 0\.0005\), --reward_scale \(now 0\.02\) or --max_grad_norm "
        r"\(now 40\)",
        line,
    )
    assert step, line
    saved = sorted((tmp_path / "smoke" / "checkpoint_p0").glob("*.pth"))
    steps = [int(path.stem.split("_")[1]) for path in saved]
    assert saved and 0 < max(steps) <= int(step[1]), (steps, line)
    for path in saved:
        assert nonfinite_tensors(torch.load(path, weights_only=False)["model"]) == [], path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["options", "extra"], "unrecognized arguments: extra"),
        (["train"], "the following arguments are required: preset"),
        (["train", "nope"], "unknown preset 'nope'"),
        (["train", "smoke", "--learning_rate=-1"], "bad value for learning_rate: -1.0 (must be > 0)"),
        (["train", "smoke", "--num_workers=0"], "bad value for num_workers: 0 (must be >= 1)"),
        (["train", "smoke", "--gamma=1.01"], "bad value for gamma: 1.01 (must be in [0, 1])"),
        (["train", "smoke", "--exploration_loss_coeff=-0.1"], "bad value for exploration_loss_coeff"),
        (["train", "smoke", "--max_nonfinite_updates=0"], "bad value for max_nonfinite_updates: 0 (must be >= 1)"),
        (["train", "smoke", "--num_envs_per_worker=3"], "must be a multiple of worker_num_splits=2"),
        (["train", "smoke", "--batch_size=510"], "batch_size=510 must be a multiple of recurrence=50"),
        (["train", "smoke", "--vector_size=0"], "bad value for vector_size: 0 (must be >= 1)"),
        (["train", "smoke", "--use_rnn=True"], "the CC4 model is feed-forward"),
        (["train", "smoke", "--entity_width=0"], "bad value for entity_width: 0 (must be >= 1)"),
        (["train", "smoke", "--cyborg_vector_size=0"], "bad value for cyborg_vector_size: 0 (must be >= 1)"),
        (["train", "smoke", "--actor=transformer"], "bad value for actor: 'transformer' (choose from mlp, entity)"),
        (["train", "smoke", "--vector_size=3", "--batch_size=1000"], "one must divide the other"),
        (["train", "smoke", "--backend=synthetic", "--train_dir=/dev/null/runs"], "cannot write the run directory"),
        (["export", "nope", "--out", "OUT"], "unknown experiment 'nope'"),
        (["export", "nope"], "the following arguments are required: --out"),
        (["export", "nope", "--out", "OUT", "--select-episodes=0"], "--select-episodes: must be at least 1 (got 0)"),
        (["evaluate", "SUB", "--episodes=0", "--backend=sim", "--out=OUT"], "--episodes: must be at least 1 (got 0)"),
        (["evaluate", "SUB", "--episodes=1", "--backend=sim", "--out=OUT"], "is not a cage-sf submission"),
        (["evaluate", "SUB", "--workers=0"], "--workers: must be at least 1 (got 0)"),
        (["plot", "nope"], "unknown experiment 'nope'"),
        (["parity", "--episodes=0"], "--episodes: must be at least 1 (got 0)"),
        (["parity", "--workers=0"], "--workers: must be at least 1 (got 0)"),
        (["parity", "--margin=-5"], "--margin: must be above 0 (got -5)"),
    ],
)
def test_bad_cli_input_is_one_line_on_stderr_and_exit_2(tmp_path, argv, message):
    argv = [str(tmp_path / a) if a in ("OUT", "SUB") else a.replace("=OUT", f"={tmp_path}/out") for a in argv]
    result = run([sys.executable, "-m", "cage_sf.cli", *argv], timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""  # no library log lines either
    [line] = result.stderr.splitlines()
    assert line.startswith("cage-sf: error: ") and message in line, line
