"""A CAGE Challenge 4 submission exported by cage-sf (https://github.com/cage-challenge/cage-challenge-4).

Evaluate with CybORG's own script: `python -m CybORG.Evaluation.evaluation <this directory or zip> <output>`.
"""

from __future__ import annotations

import json
import pkgutil

from CybORG import CybORG
from CybORG.Agents.Wrappers.EnterpriseMAE import EnterpriseMAE

try:  # imported as submission.submission (the zip layout)
    from . import cc4_agent
except ImportError:  # imported as a top-level module (a directory on sys.path)
    import cc4_agent

_INFO = json.loads(pkgutil.get_data(cc4_agent.__name__, "model.json"))["submission"]


class Submission:
    NAME: str = _INFO["name"]
    TEAM: str = _INFO["team"]
    TECHNIQUE: str = _INFO["technique"]
    AGENTS: dict = cc4_agent.load_agents(cc4_agent.__name__)

    def wrap(env: CybORG) -> cc4_agent.MessageRelay:
        """CybORG's wrapper, whose steps also carry the agents' messages (evaluation.py sends none itself)."""
        wrapped = EnterpriseMAE(env)
        for agent in Submission.AGENTS.values():
            agent.attach(wrapped)
        return cc4_agent.MessageRelay(wrapped, Submission.AGENTS)
