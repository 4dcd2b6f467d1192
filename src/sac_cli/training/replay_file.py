"""A replay buffer file read back: every field's type, dtype and shape checked against the
buffer it is to fill, each defect one ValueError naming the field (a file is data, never
trusted)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SavedBuffer(NamedTuple):
    pos: int
    size: int
    finals_added: int
    finals_dropped: int
    data: torch.Tensor  # the used rows
    final_obs: torch.Tensor
    final_slots: torch.Tensor
    generator: torch.Tensor


def check_saved(state: dict, capacity: int, obs_dim: int, act_dim: int, width: int) -> SavedBuffer:
    """The fields of `state` (ReplayBuffer.state_dict) once they fit a buffer of `capacity`
    rows of `width` columns for these observation and action sizes."""
    if "data" not in state:
        raise ValueError(
            "replay buffer saved in an older layout (one tensor per field), which this "
            "version does not read; start a new run directory"
        )
    dims = (state.get("obs_dim"), state.get("act_dim"))
    if state.get("capacity") != capacity or dims != (obs_dim, act_dim):
        raise ValueError(
            f"replay buffer of capacity {state.get('capacity')} with observation and action "
            f"sizes {dims} does not fit capacity {capacity} and sizes "
            f"{(obs_dim, act_dim)}: resume with the original agent.buffer_size"
        )
    pos, size, added, dropped = (
        _count(state, key) for key in ("pos", "size", "finals_added", "finals_dropped")
    )
    data, finals, slots = state.get("data"), state.get("final_obs"), state.get("final_slots")
    rows = min(capacity, size + 1)
    _check_tensor("data", data, torch.float32, (rows, width))
    _check_tensor("final_obs", finals, torch.float32, (None, obs_dim))
    _check_tensor("final_slots", slots, torch.int64, (added - dropped,))
    if size > capacity or pos >= capacity or finals.shape[0] < 1:
        raise ValueError(
            f"replay buffer counters (pos {pos}, size {size}) are inconsistent: the file "
            "is damaged or was not written by sac-cli"
        )
    if not isinstance(state.get("generator"), torch.Tensor):
        raise ValueError("replay buffer has no sampling generator state")
    return SavedBuffer(pos, size, added, dropped, data, finals, slots, state["generator"])


def _count(state: dict, key: str) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"replay buffer field {key!r} is {value!r}, not a count")
    return value


def _check_tensor(
    key: str, value: object, dtype: torch.dtype, shape: tuple[int | None, ...]
) -> None:
    """`value` is a tensor of `dtype` whose sizes equal `shape` (None: any size)."""
    fits = (
        isinstance(value, torch.Tensor)
        and value.dtype == dtype
        and value.dim() == len(shape)
        and all(want is None or got == want for got, want in zip(value.shape, shape, strict=True))
    )
    if not fits:
        got = (
            f"{value.dtype} of shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        want = "x".join("*" if n is None else str(n) for n in shape)
        raise ValueError(
            f"replay buffer field {key!r} is {got}, expected {dtype} of shape {want}: the file "
            "is damaged or was not written by sac-cli"
        )
