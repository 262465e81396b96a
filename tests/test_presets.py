import functools
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cage_sf.errors import UsageError
from cage_sf.presets import available_presets, load_preset
from cage_sf.train import check_run_dir, resolve_config

REPO = Path(__file__).resolve().parent.parent


def test_required_presets_exist():
    assert {"smoke", "impala-seed", "default"} <= set(available_presets())


@pytest.mark.parametrize("preset", available_presets())
def test_every_preset_resolves_with_vtrace(preset):
    cfg = resolve_config(preset, [])
    assert cfg.env == "cc4" and cfg.experiment == preset and cfg.train_dir == "runs"
    assert cfg.with_vtrace and not cfg.normalize_returns and cfg.recurrence == cfg.rollout
    assert cfg.batched_sampling and cfg.vector_size >= 1 and not cfg.normalize_input
    assert cfg.reward_scale == 0.02
    assert cfg.device in ("cpu", "gpu")


def test_impala_seed_hyperparameters():
    cfg = resolve_config("impala-seed", ["--backend=synthetic"])
    assert (cfg.learning_rate, cfg.gamma, cfg.exploration_loss_coeff, cfg.value_loss_coeff) == (5e-4, 0.99, 0.01, 0.5)
    assert (cfg.batch_size, cfg.max_grad_norm, cfg.vtrace_rho, cfg.vtrace_c, cfg.rollout) == (2000, 40, 1.0, 1.0, 50)
    assert cfg.encoder_mlp_layers == [256, 256, 128] and cfg.nonlinearity == "relu"
    assert not cfg.actor_critic_share_weights


def test_default_learns_from_scratch_and_leaderboard_fine_tunes_an_imitated_actor_on_its_other_settings():
    leaderboard, default = resolve_config("leaderboard", []), resolve_config("default", [])
    assert leaderboard.actor == default.actor == "entity"
    assert leaderboard.privileged_critic and default.privileged_critic
    assert default.factored_actions and not leaderboard.factored_actions  # the imitation was measured on flat logits
    assert leaderboard.imitate == "remove-analyse-restore" and default.imitate == "none"
    assert leaderboard.learning_rate < default.learning_rate / 2
    assert default.target_entropy_share == 0.1 and leaderboard.target_entropy_share == 1.0
    assert 0 < leaderboard.anchor_floor < leaderboard.anchor_coeff
    differ = {k for k in vars(default) if getattr(default, k) != getattr(leaderboard, k)}
    imitation = {"imitate", "imitate_epochs", "imitate_smoothing", "imitate_floor"}
    anchor = {"anchor_coeff", "anchor_decay_steps", "anchor_floor", "critic_warmup_steps"}
    tuned = {"factored_actions", "learning_rate", "exploration_loss_coeff", "target_entropy_share"} | imitation | anchor
    assert differ - {"command_line", "cli_args"} == tuned | {"experiment"}


def test_extends_and_overrides_win():
    assert load_preset("smoke")["learning_rate"] == load_preset("impala-seed")["learning_rate"]
    cfg = resolve_config(
        "smoke",
        [
            "--backend=synthetic",
            "--learning_rate=0.001",
            "--encoder_mlp_layers=64,32",
            "--rollout=25",
            "--with_wandb=True",
        ],
    )
    assert cfg.learning_rate == 0.001 and cfg.encoder_mlp_layers == [64, 32] and cfg.with_wandb
    assert cfg.recurrence == 25


def test_training_uses_the_simulator_unless_cyborg_is_asked_for():
    """With CybORG installed only to evaluate, `auto` used to train on it ~200x slower without saying so."""
    assert resolve_config("default", []).backend == "sim"


def test_cyborg_gets_small_vectors_unless_the_command_line_says_otherwise(monkeypatch):
    """The simulator's 16 envs per vector would build 64 CybORG instances on 2 workers (512 on 16)."""
    monkeypatch.setattr("cage_sf.backends.cyborg_available", lambda: True)
    assert resolve_config("default", ["--backend=cyborg"]).vector_size == 2
    assert resolve_config("default", ["--backend=cyborg", "--vector_size=4"]).vector_size == 4
    assert resolve_config("default", ["--backend=sim"]).vector_size == 16


def test_a_presets_privileged_critic_sees_the_blue_view_on_cyborg_unless_the_command_line_asks(monkeypatch):
    """The true state exists only in our simulator: `./train.sh default --backend=cyborg` must still run."""
    monkeypatch.setattr("cage_sf.backends.cyborg_available", lambda: True)
    assert resolve_config("default", []).privileged_critic
    assert not resolve_config("default", ["--backend=cyborg"]).privileged_critic
    with pytest.raises(UsageError, match="privileged_critic=True reads our simulator's true state"):
        resolve_config("default", ["--backend=cyborg", "--privileged_critic=True"])


def test_preset_from_a_yaml_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: smoke\nnum_workers: 1\n")
    cfg = resolve_config(str(path), ["--backend=synthetic"])
    assert cfg.num_workers == 1 and cfg.experiment == "mine" and cfg.batch_size == 500


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        ("nope", [], "unknown preset 'nope'; valid presets: default, impala-seed, leaderboard, smoke"),
        ("smoke", ["--learning_rat=1"], "unknown option 'learning_rat' in the command line"),
        ("smoke", ["--learning_rate=fast"], "bad value for learning_rate: 'fast' (expected float)"),
        ("smoke", ["--with_vtrace=yes"], "bad value for with_vtrace: 'yes'"),
        ("smoke", ["--backend=gpu"], "bad value for backend: 'gpu' (choose from auto, cyborg, sim, synthetic, delayed"),
        ("smoke", ["learning_rate=1"], "override 'learning_rate=1' must look like --name=value"),
        ("smoke", ["--backend=synthetic", "--normalize_returns=True"], "needs normalize_returns=False"),
        ("smoke", ["--normalize_input=True"], "normalize_input=True is not supported"),
    ],
)
def test_bad_input_is_one_clear_error(preset, overrides, message):
    with pytest.raises(UsageError) as excinfo:
        resolve_config(preset, overrides)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_unwritable_run_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = resolve_config("smoke", ["--backend=synthetic", f"--train_dir={blocker}/runs"])
    with pytest.raises(UsageError, match="cannot write the run directory"):
        check_run_dir(cfg)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown preset 'nope'"),
        (["smoke", "--bogus=1"], "unknown option 'bogus'"),
        (["smoke", "--num_workers=two"], "bad value for num_workers"),
        (["smoke", "--backend=synthetic", "--train_dir=/dev/null/runs"], "cannot write the run directory"),
    ],
)
def test_train_sh_reports_one_line_and_fails(args, message):
    result = subprocess.run([str(REPO / "train.sh"), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # ours is one line, the last one; gym's import banner (printed when CybORG is installed) is silenced
    errors = [line for line in result.stderr.splitlines() if line.startswith("cage-sf: error:")]
    assert len(errors) == 1 and message in errors[0] and result.stderr.strip().endswith(errors[0])
    assert "Gym has been unmaintained" not in result.stderr  # gym's banner, printed when CybORG is installed


def test_an_installed_package_finds_every_preset_without_a_checkout(tmp_path):
    """The wheel carries configs/ as cage_sf/configs; unpacked away from the checkout, `cage-sf train --help` lists
    every preset and one of them resolves."""
    source = tmp_path / "source"
    for part in ("pyproject.toml", "README.md"):
        (source / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / part, source / part)
    for part in ("cage_sf", "configs"):
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", str(source)]
    subprocess.run([*build, "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("cage_sf-*.whl")
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    presets = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    assert sorted(p.stem for p in (installed / "cage_sf" / "configs").glob("*.yaml")) == presets
    env = {**os.environ, "PYTHONPATH": str(installed)}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert run([sys.executable, "-c", "import cage_sf; print(cage_sf.__file__)"]).stdout.startswith(str(installed))
    usage = run([sys.executable, "-m", "cage_sf.cli", "train", "--help"]).stdout
    assert f"one of: {', '.join(presets)}," in " ".join(usage.split())
    check = "from cage_sf.presets import load_preset; print(load_preset('leaderboard')['actor'])"
    assert run([sys.executable, "-c", check]).stdout.strip() == "entity"
