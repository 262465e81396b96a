"""The blue team reward (docs/cc4.md §7): penalties for failed green work, blocked green access and red Impacts."""

from __future__ import annotations

import numpy as np

from cage_sf.sim.topology import ADM, CON, INT, NUM_SUBNETS, OFF, OZA, OZB, PAZ, RZA, RZB


def _table(rows: dict[int, tuple[tuple[int, int, int], ...]]) -> np.ndarray:
    """rows[subnet] = ((LWF, ASF, RIA) for phase 0, 1, 2) -> array (3 kinds, 3 phases, 9 subnets)."""
    table = np.zeros((3, 3, NUM_SUBNETS), dtype=np.float64)
    for subnet, phases in rows.items():
        for phase, values in enumerate(phases):
            table[:, phase, subnet] = values
    return table


_HQ = ((-1, -1, -3),) * 3
PENALTIES = _table(
    {
        PAZ: _HQ,
        ADM: _HQ,
        OFF: _HQ,
        CON: ((0, -5, -5), (0, 0, 0), (0, 0, 0)),
        RZA: ((-1, -3, -1), (-2, -1, -3), (-1, -3, -3)),
        OZA: ((-1, -1, -1), (-10, 0, -10), (-1, -1, -1)),
        RZB: ((-1, -3, -1), (-1, -1, -1), (-2, -1, -3)),
        OZB: ((-1, -1, -1), (-1, -1, -1), (-10, 0, -10)),
        INT: ((0, 0, -1), (0, 0, 0), (0, 0, 0)),
    }
)
LWF, ASF, RIA = PENALTIES  # each (phase, subnet)
RESTORE_COST = -1.0


def phase_of(t: int, steps: int) -> int:
    """Mission phase for step counter t: lengths divmod(steps, 3) -> e.g. (167, 167, 166) for 500 steps."""
    base, extra = divmod(steps, 3)
    first = base + (extra > 0)
    second = first + base + (extra > 1)
    if not 0 <= t < steps:  # CybORG fails the same way on a second step after done
        raise ValueError(f"step number ({t}) exceeds the last mission phase of a {steps}-step episode: call reset()")
    return 0 if t < first else 1 if t < second else 2
