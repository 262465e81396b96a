"""bench/train_throughput.py's pieces that need no training: the steady-state rate and the code of another commit."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import train_throughput  # noqa: E402


def test_the_steady_state_rate_is_the_slope_of_the_frame_counter_after_start_up():
    lines = [f"[2026-12-06 03:00:{s:02d},000][1] Fps is ... Total num frames: {n}." for s, n in
             [(0, 0), (5, 0), (10, 1000), (15, 6000), (20, 11000), (25, 16000)]]  # fmt: skip
    assert train_throughput.steady_state_rate("\n".join(lines)) == pytest.approx(1000.0)
    with pytest.raises(RuntimeError, match="fewer than three"):
        train_throughput.steady_state_rate("\n".join(lines[:3]))


def test_checkout_gives_a_commits_code_and_removes_it_afterwards():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the tests do not run from a git checkout")
    with train_throughput.checkout(head.stdout.strip()) as worktree:
        assert (worktree / "cage_sf" / "models.py").read_text() == subprocess.run(
            ["git", "-C", str(REPO), "show", "HEAD:cage_sf/models.py"], capture_output=True, text=True, check=True
        ).stdout
    assert not worktree.exists()
    listed = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True, check=True)
    assert str(worktree) not in listed.stdout


def test_the_scaling_benchmark_samples_with_the_actor_and_tabulates_ratios_to_raw():
    import scaling

    assert scaling.sampled_env_steps_in("smoke", vector_size=2, seconds=0.5, seed=0) >= 2
    assert scaling.doubling(1) == [1] and scaling.doubling(6) == [1, 2, 4, 6] and scaling.doubling(8) == [1, 2, 4, 8]
    row = {"workers": 2, "vector_size": 16, "sampler": 30000.0, "train": 20000.0, "raw": 80000.0}
    assert scaling.table([row]).splitlines()[-1] == "| 2 | 16 | 30,000 | 20,000 | 80,000 | 0.25 | 0.38 |"
