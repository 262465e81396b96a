"""Our own CC4 simulator: CybORG CC4's statistics and quirks (docs/cc4.md) at thousands of steps per second.

numpy only; it never imports CybORG, Sample Factory or torch.
"""

from cage_sf.sim.env import CC4Sim, make_cc4

__all__ = ["CC4Sim", "make_cc4"]
