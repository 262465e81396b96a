"""Presets (configs/<name>.yaml, Sample Factory argument names) + `--name=value` overrides -> SF config.

A preset may `extends:` another; later values win, and command-line overrides win over the preset.
Every key and value is checked against Sample Factory's own argument parser before anything runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cage_sf import cc4
from cage_sf.backends import resolve_backend
from cage_sf.errors import UsageError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
RESERVED_KEYS = ("extends", "description")


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(available_presets())}")
    return path


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in _seen:
        raise UsageError(f"preset {name!r} extends itself ({' -> '.join(_seen + (name,))})")
    path = preset_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"preset {path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise UsageError(f"preset {path} must be a mapping of Sample Factory argument names to values")
    base = load_preset(data["extends"], _seen + (name,)) if data.get("extends") else {}
    return base | {k: v for k, v in data.items() if k not in RESERVED_KEYS}


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    overrides = {}
    for token in tokens:
        if not token.startswith("--") or "=" not in token:
            raise UsageError(f"override {token!r} must look like --name=value")
        key, value = token[2:].split("=", 1)
        overrides[key] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    """Sample Factory's full parser plus the CC4 env arguments; `--device` also accepts `auto`."""
    from sample_factory.cfg.arguments import parse_sf_args  # imports torch: only when a config is built

    from cage_sf.env_registry import add_cc4_env_args
    from cage_sf.imitation import add_imitation_args
    from cage_sf.models import add_model_args

    parser, _ = parse_sf_args(["--env=cc4"])
    add_cc4_env_args(parser)
    add_model_args(parser)
    add_imitation_args(parser)
    parser._option_string_actions["--device"].choices = ["auto", "gpu", "cpu"]
    run = parser.add_argument_group("cage-sf")
    run.add_argument(
        "--stall_timeout_s",
        default=120.0,
        type=float,
        help="a run that collects no frames for this long (start-up included) stops with an error",
    )
    run.add_argument(
        "--max_nonfinite_updates",
        default=1,
        type=int,
        help="a run stops with an error at this many non-finite updates in a row (loss or gradients); fewer are "
        "dropped",
    )
    return parser


@dataclass(frozen=True)
class Domain:
    """An interval of valid values: [low, high], either end open."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Domain(0, low_open=True)
NON_NEGATIVE = Domain(0)
AT_LEAST_ONE = Domain(1)
PROBABILITY = Domain(0, 1)

# Values Sample Factory's parser accepts but a run cannot work with: refused before the run starts.
DOMAINS: dict[str, Domain] = {
    **dict.fromkeys(
        ("learning_rate", "adam_eps", "reward_scale", "reward_clip", "ppo_clip_ratio", "ppo_clip_value", "vtrace_rho",
         "vtrace_c", "train_for_env_steps", "train_for_seconds", "save_every_sec", "save_best_every_sec",
         "experiment_summaries_interval", "heartbeat_interval", "step_timeout_s", "stall_timeout_s"),
        POSITIVE,
    ),
    **dict.fromkeys(
        ("max_grad_norm", "exploration_loss_coeff", "value_loss_coeff", "save_best_after", "anchor_coeff",
         "anchor_floor", "critic_warmup_steps"),
        NON_NEGATIVE,
    ),
    "anchor_decay_steps": POSITIVE,
    "imitate_smoothing": Domain(0, 1, high_open=True),
    **dict.fromkeys(
        ("num_workers", "num_envs_per_worker", "worker_num_splits", "policy_workers_per_policy", "num_policies",
         "batch_size", "num_batches_per_epoch", "num_epochs", "rollout", "max_policy_lag", "keep_checkpoints",
         "stats_avg", "episode_steps", "vector_size", "cyborg_vector_size", "entity_width", "max_nonfinite_updates"),
        AT_LEAST_ONE,
    ),
    **dict.fromkeys(("gamma", "gae_lambda"), PROBABILITY),
    **dict.fromkeys(("adam_beta1", "adam_beta2"), Domain(0, 1, high_open=True)),
}  # fmt: skip

# Combinations Sample Factory accepts and then misbehaves on: (holds, why), `why` formatted with the config.
COMBINATIONS: tuple[tuple[Callable[[argparse.Namespace], bool], str], ...] = (
    (
        lambda cfg: not cfg.normalize_input,
        "normalize_input=True is not supported: the inputs are bounded flags, traces and counts, and SF's one "
        "normaliser would mix both agent types' padded vectors",
    ),
    (
        lambda cfg: not (cfg.use_rnn or cfg.actor_critic_share_weights),
        "the CC4 model is feed-forward with separate value networks: use_rnn=False, actor_critic_share_weights=False",
    ),
    (
        lambda cfg: not (cfg.with_vtrace and cfg.normalize_returns),
        "with_vtrace=True needs normalize_returns=False in Sample Factory 2.1.1",
    ),
    (
        lambda cfg: cfg.num_envs_per_worker % cfg.worker_num_splits == 0,
        "num_envs_per_worker={num_envs_per_worker} must be a multiple of worker_num_splits={worker_num_splits}",
    ),
    (
        lambda cfg: (
            not cfg.batched_sampling
            or _one_divides_the_other(
                len(cc4.AGENTS) * cfg.vector_size * cfg.num_envs_per_worker // cfg.worker_num_splits,
                cfg.batch_size // cfg.rollout,
            )
        ),
        "with batched_sampling, a worker fills 5 agents x vector_size={vector_size} x num_envs_per_worker="
        "{num_envs_per_worker} / worker_num_splits={worker_num_splits} trajectories at a time and a batch holds "
        "batch_size={batch_size} / rollout={rollout}: one must divide the other (Sample Factory's buffers)",
    ),
    (
        lambda cfg: not cfg.privileged_critic or resolve_backend(cfg.backend) == "sim",
        "privileged_critic=True reads our simulator's true state: --backend=sim (not {backend})",
    ),
    (
        lambda cfg: cfg.imitate != "none" or cfg.anchor_coeff == 0,
        "anchor_coeff={anchor_coeff} anchors the actors to the imitated policy: it needs --imitate",
    ),
    (
        lambda cfg: cfg.anchor_floor <= cfg.anchor_coeff,
        "anchor_floor={anchor_floor} is where the anchor's weight settles, so at most anchor_coeff={anchor_coeff}",
    ),
    (
        lambda cfg: cfg.with_vtrace or (cfg.anchor_coeff == 0 and cfg.critic_warmup_steps == 0),
        "anchor_coeff and critic_warmup_steps are losses of the V-trace learner (cage_sf.losses): with_vtrace=True",
    ),
    (
        lambda cfg: cfg.batch_size % max(cfg.recurrence, 1) == 0,
        "batch_size={batch_size} must be a multiple of recurrence={recurrence} (= rollout with V-trace): the "
        "learner splits batches into whole trajectories",
    ),
)


def _one_divides_the_other(a: int, b: int) -> bool:
    return a > 0 and b > 0 and (a % b == 0 or b % a == 0)


def check_config(cfg: argparse.Namespace) -> None:
    """Refuse, with one line, a parsed config holding a value outside its domain or a combination that misbehaves."""
    for key, domain in DOMAINS.items():
        value = getattr(cfg, key)
        if value not in domain:
            raise UsageError(f"bad value for {key}: {value!r} (must be {domain})")
    for holds, why in COMBINATIONS:
        if not holds(cfg):
            raise UsageError(why.format(**vars(cfg)))


def _as_strings(action: argparse.Action, value: Any) -> list[str]:
    if action.nargs in ("*", "+"):
        items = value if isinstance(value, list) else str(value).replace(",", " ").split()
        return [str(v) for v in items]
    return [str(value)]


def _check_value(action: argparse.Action, key: str, strings: list[str]) -> None:
    for s in strings:
        try:
            converted = action.type(s) if action.type else s
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            expected = getattr(action.type, "__name__", "a valid value")
            raise UsageError(f"bad value for {key}: {s!r} (expected {expected})") from None
        if action.choices is not None and converted not in action.choices:
            raise UsageError(f"bad value for {key}: {s!r} (choose from {', '.join(map(str, action.choices))})")


def to_argv(values: dict[str, Any], parser: argparse.ArgumentParser, source: str) -> list[str]:
    argv = []
    for key, value in values.items():
        action = parser._option_string_actions.get(f"--{key}")
        if action is None:
            raise UsageError(f"unknown option {key!r} in {source}; `cage-sf options` lists the valid names")
        if value is None:
            continue
        strings = _as_strings(action, value)
        _check_value(action, key, strings)
        argv += [f"--{key}", *strings] if action.nargs in ("*", "+") else [f"--{key}={strings[0]}"]
    return argv


def preset_argv(preset: str, override_tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """The Sample Factory command line a preset plus overrides stand for (validated)."""
    argv = ["--env=cc4", f"--experiment={Path(preset).stem}"]
    argv += to_argv(load_preset(preset), parser, f"preset {preset!r}")
    return argv + to_argv(parse_overrides(override_tokens), parser, "the command line")


def parse_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    from sample_factory.cfg.arguments import parse_full_cfg

    return parse_full_cfg(parser, argv)
