"""Normalised scores for `sac-plot --aggregate --normalize`: (return - random) / (reference -
random), so that 0 is a uniformly random policy and 1 the reference, on every task alike.

MuJoCo tasks: the random and expert returns of D4RL (Fu et al. 2020, "D4RL: Datasets for Deep
Data-Driven Reinforcement Learning", d4rl/infos.py REF_MIN_SCORE and REF_MAX_SCORE; its expert
is an SAC policy). D4RL measured them on the -v2 tasks; v4 and v5 keep their reward terms,
except Ant, whose contact cost is off by default since v4, so its values are approximate there.
DeepMind Control Suite tasks: every step's reward lies in [0, 1] and episodes last 1000 steps
(Tassa et al. 2018, "DeepMind Control Suite", section 2), so 0 and 1000 bound every return;
rliable's own DMC analysis (Agarwal et al. 2021) divides by that maximum, 1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sac_cli.errors import UserError


@dataclass(frozen=True)
class ReferenceScores:
    random: float
    reference: float
    source: str


D4RL = "D4RL (Fu et al. 2020), random and expert returns"
_D4RL_SCORES = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
    "Ant": (-325.6, 3879.7),
}
MUJOCO_SCORES = {
    f"{task}-{version}": ReferenceScores(low, high, D4RL)
    for task, (low, high) in _D4RL_SCORES.items()
    for version in ("v4", "v5")
}
DMC_SCORES = ReferenceScores(0.0, 1000.0, "DeepMind Control Suite: 1000 steps, rewards in [0, 1]")


def reference_scores(env_id: str) -> ReferenceScores:
    if env_id.startswith("dm_control/"):
        return DMC_SCORES
    try:
        return MUJOCO_SCORES[env_id]
    except KeyError:
        known = ", ".join(sorted(MUJOCO_SCORES))
        raise UserError(
            f"--normalize: no reference scores for {env_id} (the table covers {known} and "
            "dm_control/* tasks): aggregate its raw returns instead (leave out --normalize)"
        ) from None


def normalize(env_id: str, returns: np.ndarray) -> np.ndarray:
    scores = reference_scores(env_id)
    return (returns - scores.random) / (scores.reference - scores.random)
