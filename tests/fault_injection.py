"""Fault injection for tests/test_failures.py: `CAGE_SF_FAULT=KIND python tests/fault_injection.py ARGS` runs
`cage-sf train ARGS` with one fault.

As a main module this file runs first in every process Sample Factory spawns (as train.sh's `-m cage_sf.cli` does),
and `CAGE_SF_FAULT`, inherited, tells each process which fault to apply:

- `learner`: `--learning_rate=-1` passes our option check, and torch's optimizer raises in the learner at start-up;
- `env`: making the env raises in the rollout workers only (the runner's env-info process makes it fine);
- `env-everywhere`: making the env raises in every process, the runner's env-info process first;
- `model`: the actor-critic factory raises (in the learner, which builds the model);
- `stall`: the inference worker never answers, so no frames arrive;
- `diverge`: once the run has saved a checkpoint after training (train step above 0), the learner's value loss is
  infinite (its gradients too).
"""

from __future__ import annotations

# isort: off
import cage_sf  # noqa: F401  (first, as train.sh's main module does: it silences gym's import banner)

# isort: on
import math
import multiprocessing
import os
import sys
from pathlib import Path

from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.sampling.inference_worker import InferenceWorker
from sample_factory.algo.utils.context import global_model_factory
from sample_factory.envs.env_utils import register_env

from cage_sf import cli, env_registry, models, params

FAULT = os.environ.get("CAGE_SF_FAULT", "")


def make_env(full_env_name, cfg, env_config=None, render_mode=None):
    in_worker = multiprocessing.current_process().name.startswith("rollout_proc")
    if FAULT == "env-everywhere" or (FAULT == "env" and in_worker):
        raise RuntimeError("injected env fault")
    return env_registry.make_cc4_env(full_env_name, cfg, env_config, render_mode)


def broken_model(cfg, obs_space, action_space):
    raise RuntimeError("injected model fault")


_value_loss = Learner._value_loss


def diverging_value_loss(self, *args):
    loss = _value_loss(self, *args)
    saved = Path(self.checkpoint_dir(self.cfg, self.policy_id)).glob("checkpoint_*.pth")
    trained = any(int(path.stem.split("_")[1]) > 0 for path in saved)
    return loss * math.inf if trained else loss


register_env(env_registry.ENV_NAME, make_env)
if FAULT == "model":
    global_model_factory().register_actor_critic_factory(broken_model)
else:
    global_model_factory().register_actor_critic_factory(models.make_cc4_actor_critic)
if FAULT == "stall":
    InferenceWorker._handle_policy_steps = lambda self, timing: None
if FAULT == "learner":
    del params.DOMAINS["learning_rate"]
if FAULT == "diverge":
    Learner._value_loss = diverging_value_loss

if __name__ == "__main__":
    sys.exit(cli.main(["train", *sys.argv[1:]]))
