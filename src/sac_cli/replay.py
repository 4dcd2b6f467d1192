"""A preallocated ring buffer of transitions on the training device.

Each observation is stored once: the next observation of the transition in slot i is the
observation in slot i + 1. Two cases break that chain and are handled apart:
- termination: no bootstrap happens (eq. 8 is masked), so slot i + 1 may hold anything;
- truncation (a time limit): the bootstrap needs the true final observation, which is kept
  in a small side store indexed by a running truncation counter.
The slot right after the newest transition holds that transition's next observation, so
when the ring is full the oldest slot is overwritten early and is never sampled.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    def __init__(
        self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str, seed: int = 0
    ) -> None:
        self.capacity = capacity
        self.device = torch.device(device)
        self.obs = torch.zeros(capacity, obs_dim, dtype=torch.float32, device=self.device)
        self.actions = torch.zeros(capacity, act_dim, dtype=torch.float32, device=self.device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.truncated = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        # For a truncated slot: the running number of its final observation in `final_obs`.
        self.final_index = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.final_obs = torch.zeros(max(1, capacity // 1000), obs_dim, device=self.device)
        self.finals_added = 0  # truncations ever stored
        self.finals_dropped = 0  # of those, overwritten in the ring
        self.pos = 0
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def bytes_per_transition(self) -> float:
        per_slot = sum(t.element_size() * t[0].numel() for t in self._ring_tensors())
        return per_slot + self.final_obs.element_size() * self.final_obs[0].numel() * (
            self.final_obs.shape[0] / self.capacity
        )

    def _ring_tensors(self) -> list[torch.Tensor]:
        return [
            self.obs,
            self.actions,
            self.rewards,
            self.terminated,
            self.truncated,
            self.final_index,
        ]

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
        if self.size == self.capacity and bool(self.truncated[i]):
            self.finals_dropped += 1  # the oldest final observation leaves with its slot
        self.obs[i] = torch.as_tensor(obs, dtype=torch.float32)
        self.actions[i] = torch.as_tensor(action, dtype=torch.float32)
        self.rewards[i] = float(reward)
        self.terminated[i] = bool(terminated)
        self.truncated[i] = bool(truncated) and not terminated
        if truncated and not terminated:
            self._store_final(i, next_obs)
        elif not terminated:
            self.obs[(i + 1) % self.capacity] = torch.as_tensor(next_obs, dtype=torch.float32)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def truncate_last(self, next_obs: np.ndarray) -> None:
        """Mark the newest transition as the end of a truncated episode (a run stopped
        mid-episode continues with a fresh one), keeping its true next observation."""
        i = (self.pos - 1) % self.capacity
        if not bool(self.terminated[i]) and not bool(self.truncated[i]):
            self.truncated[i] = True
            self._store_final(i, next_obs)

    def _store_final(self, slot: int, next_obs: np.ndarray) -> None:
        live = self.finals_added - self.finals_dropped
        if live == self.final_obs.shape[0]:
            self._grow_finals()
        k = self.finals_added
        self.final_obs[k % self.final_obs.shape[0]] = torch.as_tensor(next_obs, dtype=torch.float32)
        self.final_index[slot] = k
        self.finals_added += 1

    def _grow_finals(self) -> None:
        old = self.final_obs
        new = torch.zeros(2 * old.shape[0], old.shape[1], dtype=old.dtype, device=old.device)
        live = torch.arange(self.finals_dropped, self.finals_added, device=old.device)
        new[live % new.shape[0]] = old[live % old.shape[0]]
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
        next_obs = self.obs[(idx + 1) % self.capacity]
        finals = self.final_obs[self.final_index[idx] % self.final_obs.shape[0]]
        next_obs = torch.where(self.truncated[idx].unsqueeze(-1), finals, next_obs)
        return Batch(
            obs=self.obs[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_obs=next_obs,
            terminated=self.terminated[idx].float(),
        )

    def state_dict(self) -> dict:
        n = self.size
        return {
            "capacity": self.capacity,
            "pos": self.pos,
            "size": n,
            "obs": self.obs.cpu(),
            "actions": self.actions[:n].cpu() if n < self.capacity else self.actions.cpu(),
            "rewards": self.rewards.cpu(),
            "terminated": self.terminated.cpu(),
            "truncated": self.truncated.cpu(),
            "final_index": self.final_index.cpu(),
            "final_obs": self.final_obs.cpu(),
            "finals_added": self.finals_added,
            "finals_dropped": self.finals_dropped,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity or state["obs"].shape != self.obs.shape:
            raise ValueError(
                f"replay buffer of capacity {state['capacity']} and observation shape "
                f"{tuple(state['obs'].shape[1:])} does not fit capacity {self.capacity} and "
                f"shape {tuple(self.obs.shape[1:])}"
            )
        self.pos, self.size = int(state["pos"]), int(state["size"])
        self.obs.copy_(state["obs"])
        self.actions[: state["actions"].shape[0]].copy_(state["actions"])
        for name in ("rewards", "terminated", "truncated", "final_index"):
            getattr(self, name).copy_(state[name])
        self.final_obs = state["final_obs"].to(self.device)
        self.finals_added = int(state["finals_added"])
        self.finals_dropped = int(state["finals_dropped"])
        self.generator.set_state(state["generator"])
