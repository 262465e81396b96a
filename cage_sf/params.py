"""Every option cage-sf adds to Sample Factory's, in one place: the CC4 env, the model, the imitation warm start
and the teacher anchor, the learning-rate decay, run supervision; and the value domains and combinations a run is
refused for (before it starts, with one line: `cage_sf.presets.check_config`). Sample Factory's own options keep its
defaults unless a preset in configs/ sets them."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from cage_sf import cc4
from cage_sf.backends import BACKENDS, resolve_backend

ACTORS = ("mlp", "entity")


def str2bool(value: str | bool) -> bool:
    """Sample Factory's boolean option values, imported when parsed: importing Sample Factory imports torch, which
    reading a preset's domains or listing the presets should not wait for."""
    from sample_factory.utils.utils import str2bool as sample_factory_str2bool

    return sample_factory_str2bool(value)


def add_cage_sf_args(parser: argparse.ArgumentParser) -> None:
    add_cc4_env_args(parser)
    add_model_args(parser)
    add_imitation_args(parser)
    add_learning_args(parser)
    add_run_args(parser)


def add_cc4_env_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CC4")
    group.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="auto = real CybORG when importable, else our simulator"
    )
    group.add_argument(
        "--episode_steps", default=cc4.EPISODE_STEPS, type=int, help="CC4 episode length (evaluation: %(default)s)"
    )
    group.add_argument(
        "--step_timeout_s",
        default=30.0,
        type=float,
        help="an env step slower than this ends the episode as a fault and the env is rebuilt",
    )
    group.add_argument(
        "--host_memory",
        default=True,
        type=str2bool,
        help="per-host memory features (flag traces, counts since Restore, decoys); False zeroes them (an ablation)",
    )
    group.add_argument(
        "--vector_size",
        default=1,
        type=int,
        help="with batched_sampling: CC4 envs stepped together as one Sample Factory env (5 agents each)",
    )
    group.add_argument(
        "--cyborg_vector_size",
        default=2,
        type=int,
        help="vector_size on --backend=cyborg unless --vector_size is given on the command line",
    )
    group.add_argument(
        "--messages",
        default=False,
        type=str2bool,
        help="each agent also sends its team 8 bits per step, sampled by the policy and learned with its actions",
    )
    group.add_argument(
        "--stagger_episodes",
        default=True,
        type=str2bool,
        help="with batched_sampling: end first episodes at spread steps so the envs of a vector do not run in lockstep",
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CC4 model")
    group.add_argument("--actor", default="mlp", choices=ACTORS, help="actor network (cc4_networks.py)")
    group.add_argument("--entity_width", default=64, type=int, help="the entity actor's embedding width")
    group.add_argument(
        "--factored_actions",
        default=False,
        type=str2bool,
        help="the actors choose a command, then its target (cc4_networks.compose): the same flat action index",
    )
    group.add_argument(
        "--team_critic",
        default=False,
        type=str2bool,
        help="one critic for all five agents, who share its input and the reward (once per env step); False: one "
        "per agent type",
    )
    group.add_argument(
        "--privileged_critic",
        default=False,
        type=str2bool,
        help="the critics also see the simulator's true state (red's privilege per host, decoys, files, blocks, "
        "step); the actors, and so the exported agents, never do",
    )


def add_imitation_args(parser: argparse.ArgumentParser) -> None:
    from cage_sf.scripted import BUILTIN  # the scripted defenders load the simulator and the episode loop

    group = parser.add_argument_group("imitation warm start (a fresh run only)")
    group.add_argument(
        "--imitate",
        default="none",
        choices=["none", *BUILTIN],
        help="a scripted defender of cage_sf.scripted the networks imitate before reinforcement learning starts",
    )
    group.add_argument("--imitate_episodes", default=32, type=int, help="simulator episodes of demonstrations")
    group.add_argument("--imitate_epochs", default=10, type=int, help="passes over the demonstrations")
    group.add_argument("--imitate_lr", default=1e-3, type=float, help="Adam's learning rate while imitating")
    group.add_argument(
        "--imitate_smoothing",
        default=0.0,
        type=float,
        help="share of each imitated decision spread evenly over the valid commands (then over each command's "
        "targets), so reinforcement learning can still try what the teacher never does",
    )
    group.add_argument(
        "--imitate_floor",
        default=0.0,
        type=float,
        help="least probability imitation leaves each valid command on a free row (a penalty below it; 0: none), "
        "where smoothing alone lets the fit starve some rows",
    )


def add_learning_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CC4 learning (cage_sf/losses.py, cage_sf/schedules.py)")
    group.add_argument(
        "--anchor_coeff", default=0.0, type=float, help="weight of the actors' KL to the imitated policy (losses.py)"
    )
    group.add_argument(
        "--anchor_decay_steps",
        default=10_000_000,
        type=int,
        help="agent steps over which the anchor's weight falls linearly to --anchor_floor",
    )
    group.add_argument(
        "--anchor_floor",
        default=0.0,
        type=float,
        help="the anchor's weight once its decay is over (at most --anchor_coeff)",
    )
    group.add_argument(
        "--best_anchor_coeff",
        default=0.0,
        type=float,
        help="weight of the actors' KL to the run's best policy so far (its best checkpoint; losses.py)",
    )
    group.add_argument(
        "--critic_warmup_steps", default=0, type=int, help="agent steps at the start that train only the critics"
    )
    group.add_argument(
        "--lr_decay_to",
        default=1.0,
        type=float,
        help="the learning rate falls linearly to this share of --learning_rate as the run's budget (env steps or "
        "seconds, whichever runs out first) is spent; 1: constant (schedules.py)",
    )
    group.add_argument(
        "--entropy_decay_to",
        default=1.0,
        type=float,
        help="the entropy bonus falls linearly to this share of --exploration_loss_coeff over the run's budget, as "
        "--lr_decay_to; 1: constant (schedules.py)",
    )
    group.add_argument(
        "--target_entropy_share",
        default=1.0,
        type=float,
        help="the entropy bonus is H(command) + this share of H(target | command); 1: the flat entropy (losses.py)",
    )


def add_run_args(parser: argparse.ArgumentParser) -> None:
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
         "anchor_floor", "best_anchor_coeff", "critic_warmup_steps"),
        NON_NEGATIVE,
    ),
    "anchor_decay_steps": POSITIVE,
    "imitate_smoothing": Domain(0, 1, high_open=True),
    "imitate_floor": Domain(0, 0.1),
    **dict.fromkeys(("lr_decay_to", "entropy_decay_to", "target_entropy_share"), PROBABILITY),
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
        lambda cfg: cfg.with_vtrace or cfg.anchor_coeff == cfg.best_anchor_coeff == cfg.critic_warmup_steps == 0,
        "anchor_coeff, best_anchor_coeff and critic_warmup_steps are losses of the V-trace learner (cage_sf.losses): "
        "with_vtrace=True",
    ),
    (
        lambda cfg: cfg.target_entropy_share == 1.0 or cfg.exploration_loss == "entropy",
        "target_entropy_share={target_entropy_share} weighs parts of the entropy bonus: it needs "
        "exploration_loss=entropy (not {exploration_loss})",
    ),
    (
        lambda cfg: cfg.lr_decay_to == 1.0 or cfg.lr_schedule == "constant",
        "lr_decay_to={lr_decay_to} is a schedule of its own: it needs lr_schedule=constant (not {lr_schedule})",
    ),
    (
        lambda cfg: cfg.batch_size % max(cfg.recurrence, 1) == 0,
        "batch_size={batch_size} must be a multiple of recurrence={recurrence} (= rollout with V-trace): the "
        "learner splits batches into whole trajectories",
    ),
)


def _one_divides_the_other(a: int, b: int) -> bool:
    return a > 0 and b > 0 and (a % b == 0 or b % a == 0)
