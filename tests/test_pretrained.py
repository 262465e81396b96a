"""The shipped pretrained submission (pretrained/cc4-leaderboard): it loads with only torch and numpy, plays as
its weights say, defends far better than a weak scripted defender, and CybORG's own evaluation.py scores it."""

import json
import subprocess
import sys
from pathlib import Path
from statistics import mean

import numpy as np
import pytest
import torch

from cage_sf import cc4
from cage_sf.backends import make_backend
from cage_sf.evaluate import load_agents, play
from cage_sf.export import AGENT_RUNTIME
from cage_sf.scripted import policy_returns

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "pretrained" / "cc4-leaderboard"

# Installed as sitecustomize in a child process: importing any of these fails, as on a machine without them.
BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        return None
sys.meta_path.insert(0, Blocker())
"""

REPLAY = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import cc4_agent
recorded = np.load(sys.argv[2])
agents = cc4_agent.load_agents("cc4_agent")


class Replay:  # what the env showed the agent: its step counter and what its Analyse found
    step_count = 0

    def analysis(self, agent):
        return recorded[agent + "/analysis"][self.step_count]


actions = {}
for name, agent in agents.items():
    agent.greedy = True
    env = Replay()
    agent.attach(env)
    actions[name] = []
    for step, (o, m) in enumerate(zip(recorded[name + "/obs"], recorded[name + "/mask"])):
        env.step_count = step
        actions[name].append(agent.get_action(o, mask=m))
print(json.dumps(actions))
"""


def blocking_env(tmp_path: Path, blocked: set[str]) -> dict[str, str]:
    """Environment variables for a child process in which `blocked` packages cannot be imported."""
    site = tmp_path / "blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(blocked)))
    return {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(site), "HOME": str(tmp_path)}


def test_the_pretrained_submission_is_a_complete_export_whose_code_is_the_agent_runtime_itself():
    """The shipped directory keeps only its weights and manifest; its code files are links to the one source
    every export copies (cage_sf/agent), so they cannot drift from it."""
    config = json.loads((PRETRAINED / "model.json").read_text())
    code = sorted(p.name for p in AGENT_RUNTIME.glob("*.py"))
    assert sorted(p.name for p in PRETRAINED.iterdir() if p.is_file()) == sorted(
        [*code, "model.json", "model.safetensors"]
    )
    for name in code:
        assert (PRETRAINED / name).is_symlink() and (PRETRAINED / name).samefile(AGENT_RUNTIME / name), name
    assert config["format"] == "cage-sf/2" and config["actor"] == "entity"
    assert (PRETRAINED / "model.safetensors").stat().st_size < 5 * 2**20
    readme = (REPO / "README.md").read_text()
    assert "pretrained/cc4-leaderboard" in readme and config["source"]["checkpoint"] in readme


def test_the_pretrained_agents_run_with_only_torch_and_numpy(tmp_path):
    """Replays simulator observations through the submission in a process where cage_sf, Sample Factory,
    gym(nasium), CybORG and safetensors cannot be imported: the same actions as the agents loaded here."""
    env = make_backend("sim", seed=11)
    agents, _ = load_agents(PRETRAINED)
    for agent in agents.values():
        agent.attach(env)
        agent.greedy = True
    observations, _ = env.reset()
    recorded = {f"{n}/{k}": [] for n in cc4.AGENTS for k in ("obs", "mask", "analysis")}
    expected = {name: [] for name in cc4.AGENTS}
    for _ in range(60):
        actions = {}
        for name, agent in agents.items():
            mask = env.action_mask(name)
            recorded[f"{name}/obs"].append(observations[name])
            recorded[f"{name}/mask"].append(mask)
            recorded[f"{name}/analysis"].append(env.analysis(name))
            actions[name] = agent.get_action(observations[name], mask=mask)
            expected[name].append(actions[name])
        observations, *_ = env.step(actions)
    np.savez(tmp_path / "recorded.npz", **{k: np.array(v) for k, v in recorded.items()})
    (tmp_path / "replay.py").write_text(REPLAY)

    blocked = {"cage_sf", "sample_factory", "gymnasium", "gym", "CybORG", "safetensors"}
    result = subprocess.run(
        [sys.executable, str(tmp_path / "replay.py"), str(PRETRAINED), str(tmp_path / "recorded.npz")],
        capture_output=True, text=True, timeout=120, env=blocking_env(tmp_path, blocked), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == expected
    assert len({a for actions in expected.values() for a in actions}) > 5  # it acts, not only Sleep


def test_the_pretrained_submission_defends_far_better_than_scripted_restore_decoy():
    """The shipped policy (about -124 on 200 episodes) against scripted restore-decoy (about -1,740), both on
    our simulator through evaluation.py's loop, on the same three seeds (restore-decoy: -813, -283, -1,484)."""
    torch.manual_seed(0)
    agents, _ = load_agents(PRETRAINED)
    returns, phase_sums, _ = play(agents, "sim", episodes=3, seed=3)
    scripted = policy_returns("restore-decoy", episodes=3, seed=3)
    assert mean(returns) > mean(scripted) + 500, (returns, scripted)
    assert returns == pytest.approx([sum(p) for p in phase_sums])


@pytest.mark.cyborg
@pytest.mark.slow
def test_cyborg_evaluation_scores_the_pretrained_submission_without_cage_sf(tmp_path):
    evaluation = [sys.executable, "-m", "CybORG.Evaluation.evaluation", "--max-eps", "2", "--seed", "1"]
    result = subprocess.run(
        [*evaluation, str(PRETRAINED), str(tmp_path / "eval")], capture_output=True, text=True, timeout=900,
        env=blocking_env(tmp_path, {"cage_sf", "sample_factory"}), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["submission"]["technique"].startswith("entity model")
    assert summary["reward"]["mean"] > -1500  # scripted restore-decoy scores about -1,700 on CybORG, the agent -118


def test_agents_infer_on_one_torch_thread_and_leave_the_setting_as_it_was(monkeypatch):
    """Batch-one inference of small networks: intra-op threads only wait on each other on a loaded machine."""
    agents, _ = load_agents(PRETRAINED)
    agent = agents["blue_agent_4"]
    seen = []
    actors_logits = agent.policy.actors.logits

    def recording_logits(*args):
        seen.append(torch.get_num_threads())
        return actors_logits(*args)

    monkeypatch.setattr(agent.policy.actors, "logits", recording_logits)
    env = make_backend("sim", seed=2)
    agent.attach(env)
    observations, _ = env.reset()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        agent.get_action(observations["blue_agent_4"])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
