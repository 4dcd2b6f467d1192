"""A job's name, `optimizer.critic_lr=0.001,seed=1`: what sets it apart in its sweep; and its
run directory's name (`hydra.sweep.subdir`, through the `sac_job_dir` resolver)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from omegaconf import OmegaConf

# Longest run directory name kept as is; longer ones are cut and end in a hash of the whole.
MAX_DIRNAME = 120


def job_name(override_dirname: str, seed: Any) -> str:
    """What sets a job apart in its sweep, `optimizer.critic_lr=0.001,seed=1`: its overrides
    (hydra.job.override_dirname) with the seed, added when the sweep does not set it. The
    W&B run name and, made safe by job_dirname, the run directory's name."""
    if re.search(r"(^|,)seed=", override_dirname):
        return override_dirname
    return f"{override_dirname},seed={seed}" if override_dirname else f"seed={seed}"


def job_dirname(override_dirname: str, seed: Any) -> str:
    """`hydra.sweep.subdir`: job_name as a directory name. Long floats (Optuna's samples) are
    cut to 4 significant digits and characters other than letters, digits and `._-+=,[]`
    become `_`; a name changed that way, or longer than MAX_DIRNAME, ends in a hash of the
    original, so that two jobs never share a directory."""
    name = job_name(override_dirname, seed)
    short = _FLOAT.sub(lambda m: f"{float(m[0]):.4g}" if len(m[0]) > 8 else m[0], name)
    safe = re.sub(r"[^\w.\-+=,\[\]]", "_", short, flags=re.ASCII)
    if safe == name and len(safe) <= MAX_DIRNAME:
        return safe
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[:MAX_DIRNAME]}-{digest}"


# A float value in an override list: after `=`, `,` or `[`, up to `,`, `]` or the end.
_FLOAT = re.compile(r"(?<=[=,\[])-?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][-+]?\d+)?(?=[,\]]|$)")


OmegaConf.register_new_resolver("sac_job_dir", job_dirname, replace=True)
