"""A cage-sf policy as CybORG CC4 blue agents. Needs only torch and numpy (shipped inside a submission).

Reproduces training exactly: each agent keeps the memory training kept (`cc4_memory.AgentMemories`, the same
file, one row) and feeds it what its Analyse found (`analysis`), the agent type picks the network over those
features, invalid actions (the wrapper's action mask) are masked. CybORG drops an action submitted while the
agent is still busy and still charges a Restore, so an agent submits Sleep until its in-flight action has
finished, as in training. A policy trained with messages also picks, every step, the 8 bits the agent sends its
team (`CC4Agent.message`); `MessageRelay` hands them to the env with the team's actions, since CybORG's
`evaluation.py` passes none.
"""

from __future__ import annotations

import contextlib
import json
import pkgutil
import struct

import numpy as np
import torch

try:  # imported as submission.cc4_agent (the zip layout) or as cage_sf.agent.cc4_agent
    from . import cc4_memory, cc4_networks
except ImportError:  # imported as a top-level module (a directory on sys.path)
    import cc4_memory
    import cc4_networks

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(data: bytes) -> dict[str, torch.Tensor]:
    """A minimal reader of the safetensors format (so a submission needs no extra package)."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    body = data[8 + size :]
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=_DTYPES[meta["dtype"]]).reshape(meta["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


@contextlib.contextmanager
def one_thread():
    """Torch on one thread inside, as before outside: one observation through small networks gains nothing
    from intra-op threads, and on a loaded machine they wait on each other (an episode on our simulator took
    77 s instead of 3 s on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class CC4Policy:
    """The actor networks of one cage-sf checkpoint."""

    def __init__(self, config: dict, tensors: dict[str, torch.Tensor]):
        cc4_memory.check_version(config.get("memory"))
        self.config = config
        self.actors = cc4_networks.make_actors(config)
        self.actors.load_state_dict({k[len("actors.") :]: v for k, v in tensors.items() if k.startswith("actors.")})
        self.actors.eval()

    @classmethod
    def load(cls, package: str) -> CC4Policy:
        """Load model.json and model.safetensors stored next to module `package` (a directory or a zip)."""
        config = json.loads(pkgutil.get_data(package, "model.json"))
        return cls(config, read_safetensors(pkgutil.get_data(package, "model.safetensors")))

    @torch.no_grad()
    def logits(self, features: np.ndarray, kind: int, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked action logits and the message bits' logits ([8, 2]; empty without messages)."""
        valid = torch.from_numpy(np.array(mask, dtype=bool))
        with one_thread():
            out = self.actors.logits(torch.from_numpy(features)[None], valid[None].float(), kind)[0]
        actions, bits = out[: len(valid)], out[len(valid) :].view(-1, 2)
        return actions.masked_fill(~valid, self.config["masked_logit"]), bits


def episode_step(env, calls: int) -> int:
    """The env's step counter (it restarts at every reset): cage-sf backends' `step_count`, or CybORG's through its
    wrapper. Unattached, `calls` modulo an episode's decisions (CC4 is done after step 499 of 500)."""
    if hasattr(env, "step_count"):
        return env.step_count
    controller = getattr(getattr(env, "env", None), "environment_controller", None)
    return controller.step_count if controller is not None else calls % 499


def analysis(env, agent: str, slots: int) -> np.ndarray:
    """[slots] `cc4_memory.malware_in_files` codes: what the agent's Analyse that finished in the last step found
    of red's files. cage-sf backends say it (`analysis`); under CybORG's wrapper it is read from CybORG's
    dictionary observation of the agent."""
    if hasattr(env, "analysis"):
        return env.analysis(agent)
    cyborg = getattr(env, "env", None)
    if hasattr(cyborg, "get_observation") and hasattr(env, "subnets"):
        return cc4_memory.malware_in_files(cyborg.get_observation(agent), env.subnets(agent))
    return np.zeros(slots, dtype=np.int8)


class CC4Agent:
    """One blue agent. `attach(env)` gives it the wrapper whose action mask and step counter it reads."""

    def __init__(self, name: str, policy: CC4Policy, greedy: bool | None = None):
        self.name = name
        self.policy = policy
        self.kind = int(name == "blue_agent_4")
        self.greedy = policy.config["greedy"] if greedy is None else greedy
        layout = policy.config["layouts"][self.kind]
        self.memory = cc4_memory.AgentMemories(layout)
        self.sleep = layout["sleep"]
        self.message = np.zeros(cc4_networks.MESSAGE_BITS, np.int64) if policy.config.get("messages") else None
        self.env = None
        self._calls = 0

    def attach(self, env) -> None:
        self.env = env

    def get_action(self, observation, action_space=None, mask=None) -> int:
        if episode_step(self.env, self._calls) == 0:
            self.memory.reset()  # a new episode
        self._calls += 1
        slots = len(self.memory.flag_index)
        self.memory.observe(np.asarray(observation)[None], analysis(self.env, self.name, slots)[None])
        busy = bool(self.memory.busy[0])
        if busy and self.message is None:
            return self.sleep
        if mask is None:
            mask = self.env.action_mask(self.name) if self.env is not None else [True] * len(self.memory.durations)
        if busy:  # the message only; the networks see the mask training saw while busy: Sleep alone
            mask = np.arange(len(mask)) == self.sleep
        logits, bits = self.policy.logits(self.memory.features()[0], self.kind, mask)
        if self.message is not None:  # sent every step, busy or not, as in training
            self.message = self._choose(bits).numpy()
        if busy:
            return self.sleep
        action = int(self._choose(logits[None])[0])
        self.memory.act(np.array([action]), np.array([bool(mask[action])]), np.array([True]))
        return action

    def _choose(self, logits: torch.Tensor) -> torch.Tensor:
        """One choice per row of logits: the likeliest, or sampled."""
        if self.greedy:
            return torch.argmax(logits, dim=1)
        return torch.distributions.Categorical(logits=logits).sample()


class MessageRelay:
    """An env whose `step(actions)` also sends the agents' messages (each agent's `message` after its
    `get_action`; agents without one send none): CybORG's `evaluation.py` calls `step(actions)` only.
    Everything else is the env's."""

    def __init__(self, env, agents: dict):
        self.env = env
        self.agents = agents

    def step(self, actions: dict[str, int]):
        sent = {name: getattr(agent, "message", None) for name, agent in self.agents.items()}
        messages = {name: bits for name, bits in sent.items() if bits is not None}
        return self.env.step(actions, messages=messages or None)

    def __getattr__(self, name: str):
        return getattr(self.env, name)


def load_agents(package: str) -> dict[str, CC4Agent]:
    policy = CC4Policy.load(package)
    return {f"blue_agent_{i}": CC4Agent(f"blue_agent_{i}", policy) for i in range(5)}
