"""A preallocated ring buffer of transitions on the training device.

Each observation is stored once: the next observation of the transition in slot i is the
observation in slot i + 1. Two cases break that chain and are handled apart:
- termination: no bootstrap happens (eq. 8 is masked), so slot i + 1 may hold anything;
- truncation (a time limit): the bootstrap needs the true final observation, which is kept
  in a small side store.
The slot right after the newest transition holds that transition's next observation, so
when the ring is full the oldest slot is overwritten early and is never sampled.

A slot is one row of a single float32 tensor, [obs | action | reward | terminated |
truncated | side-store index], so that storing a step is one copy from the host (the row and
the next observation are contiguous) and sampling a batch is one gather of rows i and i + 1;
the batch's fields are views into the gathered rows.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from sac_cli.device import available_memory
from sac_cli.errors import UserError
from sac_cli.training.replay_file import check_saved
from sac_cli.types import Batch


def _initial_finals(capacity: int) -> int:
    """Rows of the side store at first; it doubles when more truncations are live."""
    return max(1, capacity // 1000)


class ReplayBuffer:
    def __init__(
        self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str, seed: int = 0
    ) -> None:
        self.capacity = capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        # Columns after the observation and the action.
        self.col_reward = obs_dim + act_dim
        self.col_terminated = self.col_reward + 1
        self.col_truncated = self.col_reward + 2
        # A truncated slot's row in `final_obs`, as a float: exact below 2**24 rows.
        self.col_final = self.col_reward + 3
        self.width = self.col_reward + 4
        self.data = torch.zeros(capacity, self.width, dtype=torch.float32, device=self.device)
        self.final_obs = torch.zeros(_initial_finals(capacity), obs_dim, device=self.device)
        self.finals_added = 0  # truncations ever stored
        self.finals_dropped = 0  # of those, overwritten in the ring
        self.final_slots: deque[int] = deque()  # ring slots of the live finals, oldest first
        self.pos = 0
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        # One step as it is copied in: the slot's row, then the next observation.
        self.staging = torch.zeros(self.width + obs_dim, dtype=torch.float32)
        self._staging_np = self.staging.numpy()

    def __len__(self) -> int:
        return self.size

    @property
    def bytes_per_transition(self) -> float:
        """Every tensor the buffer holds, per transition of capacity."""
        held = (self.data, self.final_obs, self.staging)
        return sum(t.nbytes for t in held) / self.capacity

    @staticmethod
    def planned_bytes_per_transition(capacity: int, obs_dim: int, act_dim: int) -> float:
        """bytes_per_transition of a new buffer of that shape, without allocating it."""
        width = obs_dim + act_dim + 4
        floats = capacity * width + _initial_finals(capacity) * obs_dim + width + obs_dim
        return 4 * floats / capacity

    @classmethod
    def check_fits(
        cls, capacity: int, obs_dim: int, act_dim: int, device: torch.device, key: str
    ) -> None:
        """Refuse, before allocating, a buffer larger than the memory `device` has free (`key`
        names the setting of the capacity in the message)."""
        planned = cls.planned_bytes_per_transition(capacity, obs_dim, act_dim) * capacity
        free = available_memory(torch.device(device))
        if free is not None and planned > free:
            raise UserError(
                f"{key}={capacity} needs {planned / 2**30:,.1f} GiB for the replay buffer "
                f"(observation {obs_dim} + action {act_dim} floats a transition) but "
                f"{free / 2**30:,.1f} GiB of {torch.device(device).type} memory is free: "
                f"lower {key}"
            )

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        i = self.pos
        if self.size == self.capacity and self.final_slots and self.final_slots[0] == i:
            # The oldest final observation leaves with its slot.
            self.final_slots.popleft()
            self.finals_dropped += 1
        truncated = bool(truncated) and not terminated
        row, o = self._staging_np, self.obs_dim
        row[:o] = obs
        row[o : self.col_reward] = action
        row[self.col_reward] = reward
        row[self.col_terminated] = bool(terminated)
        row[self.col_truncated] = truncated
        row[self.col_final] = self._store_final(i, next_obs) if truncated else 0.0
        # The next observation goes to slot i + 1 even after a termination or a truncation
        # (where it is not read): the next add overwrites it with the reset observation.
        row[self.width :] = next_obs
        if i + 1 < self.capacity:
            start = i * self.width
            self.data.view(-1)[start : start + self.width + o].copy_(self.staging)
        else:
            self.data[i].copy_(self.staging[: self.width])
            self.data[0, :o].copy_(self.staging[self.width :])
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def truncate_last(self, next_obs: np.ndarray) -> None:
        """Mark the newest transition as the end of a truncated episode (a run stopped
        mid-episode continues with a fresh one), keeping its true next observation."""
        i = (self.pos - 1) % self.capacity
        flags = self.data[i, self.col_terminated : self.col_truncated + 1].tolist()
        if not any(flags):
            final = self._store_final(i, next_obs)
            self.data[i, self.col_truncated] = 1.0
            self.data[i, self.col_final] = float(final)

    def _store_final(self, slot: int, next_obs: np.ndarray) -> int:
        """Keep a truncated episode's final observation; return its row in `final_obs`."""
        if len(self.final_slots) == self.final_obs.shape[0]:
            self._grow_finals()
        k = self.finals_added
        row = k % self.final_obs.shape[0]
        self.final_obs[row] = torch.as_tensor(next_obs, dtype=torch.float32)
        self.final_slots.append(slot)
        self.finals_added += 1
        return row

    def _grow_finals(self) -> None:
        old = self.final_obs
        new = torch.zeros(2 * old.shape[0], old.shape[1], dtype=old.dtype, device=old.device)
        live = torch.arange(self.finals_dropped, self.finals_added, device=old.device)
        new[live % new.shape[0]] = old[live % old.shape[0]]
        slots = torch.tensor(list(self.final_slots), dtype=torch.int64, device=old.device)
        self.data[slots, self.col_final] = (live % new.shape[0]).float()
        self.final_obs = new

    def sample(self, batch_size: int) -> Batch:
        if self.size == self.capacity:
            # Skip slot `pos`: its observation was overwritten by the newest next observation.
            offset = torch.randint(
                1, self.capacity, (batch_size,), device=self.device, generator=self.generator
            )
            idx = (self.pos + offset) % self.capacity
        else:
            idx = torch.randint(
                0, self.size, (batch_size,), device=self.device, generator=self.generator
            )
        # index_select rather than indexing: the same rows, with less of the per-call cost
        # that dominates a gather of this size.
        both = self.data.index_select(0, torch.cat([idx, (idx + 1) % self.capacity]))
        rows, next_rows = both[:batch_size], both[batch_size:]
        o, r = self.obs_dim, self.col_reward
        finals = self.final_obs.index_select(0, rows[:, self.col_final].long())
        truncated = rows[:, self.col_truncated : self.col_truncated + 1] > 0.0
        return Batch(
            obs=rows[:, :o],
            actions=rows[:, o:r],
            rewards=rows[:, r],
            next_obs=torch.where(truncated, finals, next_rows[:, :o]),
            terminated=rows[:, self.col_terminated],
        )

    def state_dict(self) -> dict:
        # A ring not yet full saves its used rows (and the next observation's slot) only, as
        # copies: torch.save writes a view's whole storage, i.e. the preallocated capacity.
        rows = min(self.capacity, self.size + 1)
        return {
            "capacity": self.capacity,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "pos": self.pos,
            "size": self.size,
            "data": self.data[:rows].to("cpu", copy=True),
            "final_obs": self.final_obs.to("cpu", copy=True),
            "finals_added": self.finals_added,
            "finals_dropped": self.finals_dropped,
            "final_slots": torch.tensor(list(self.final_slots), dtype=torch.int64),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict; ValueError names what does not fit (nothing is changed then)."""
        saved = check_saved(state, self.capacity, self.obs_dim, self.act_dim, self.width)
        self.generator.set_state(saved.generator)
        self.pos, self.size = saved.pos, saved.size
        self.data.zero_()
        self.data[: saved.data.shape[0]].copy_(saved.data)
        self.final_obs = saved.final_obs.to(self.device)
        self.finals_added, self.finals_dropped = saved.finals_added, saved.finals_dropped
        self.final_slots = deque(saved.final_slots.tolist())
