"""The replay buffer stores each observation once (the next observation is the next slot's),
with truncation finals kept aside: every sampled transition must still be a true one."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sac_cli.training.replay import ReplayBuffer

OBS_DIM, ACT_DIM = 3, 2


class Transition:
    def __init__(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        self.obs, self.action, self.reward = obs, action, reward
        self.next_obs, self.terminated, self.truncated = next_obs, terminated, truncated

    @property
    def key(self) -> tuple[float, ...]:
        return tuple(self.obs.tolist())


def episode(index: int, length: int, end: str) -> list[Transition]:
    """One episode of `length` steps ending in 'terminated', 'truncated' or 'running'.
    Every observation is distinct (episode and step number), so it identifies its transition."""

    def obs(t: int) -> np.ndarray:
        return np.array([index, t, 1000 * index + t], dtype=np.float32)

    return [
        Transition(
            obs(t),
            np.array([index + 0.5, -t - 0.25], dtype=np.float32),
            float(10 * index + t),
            obs(t + 1),
            end == "terminated" and t == length - 1,
            end == "truncated" and t == length - 1,
        )
        for t in range(length)
    ]


def add_all(buffer: ReplayBuffer, transitions: list[Transition]) -> None:
    for tr in transitions:
        buffer.add(tr.obs, tr.action, tr.reward, tr.next_obs, tr.terminated, tr.truncated)


def check_samples(
    buffer: ReplayBuffer, truth: dict[tuple[float, ...], Transition], n: int
) -> set[tuple[float, ...]]:
    """Sample n transitions, compare each with the one inserted with that observation; return
    the observations seen."""
    batch = buffer.sample(n)
    assert batch.obs.shape == (n, OBS_DIM) and batch.next_obs.shape == (n, OBS_DIM)
    assert batch.actions.shape == (n, ACT_DIM)
    assert batch.rewards.shape == (n,) and batch.terminated.shape == (n,)
    seen = set()
    for i in range(n):
        key = tuple(batch.obs[i].tolist())
        assert key in truth, f"sampled an observation never inserted (or too old): {key}"
        tr = truth[key]
        assert batch.actions[i].tolist() == tr.action.tolist()
        assert batch.rewards[i].item() == tr.reward
        assert batch.terminated[i].item() == float(tr.terminated)
        if not tr.terminated:
            # After a termination s' is masked out of eq. 8 and may be anything.
            assert batch.next_obs[i].tolist() == tr.next_obs.tolist(), (key, tr.truncated)
        seen.add(key)
    return seen


def mixed_episodes(n_episodes: int, seed: int) -> list[Transition]:
    rng = random.Random(seed)
    transitions: list[Transition] = []
    for e in range(n_episodes):
        transitions += episode(e, rng.randint(1, 6), rng.choice(["terminated", "truncated"]))
    return transitions


def test_samples_are_the_inserted_transitions() -> None:
    transitions = mixed_episodes(12, seed=0) + episode(12, 3, "running")
    assert any(t.terminated for t in transitions) and any(t.truncated for t in transitions)
    buffer = ReplayBuffer(1000, OBS_DIM, ACT_DIM, "cpu", seed=0)
    add_all(buffer, transitions)
    assert len(buffer) == len(transitions)
    truth = {t.key: t for t in transitions}
    seen = check_samples(buffer, truth, 4000)
    assert seen == set(truth)  # every transition, the newest included, can be drawn


def test_truncation_keeps_the_true_final_observation() -> None:
    first = episode(0, 4, "truncated")
    second = episode(1, 4, "terminated")
    buffer = ReplayBuffer(100, OBS_DIM, ACT_DIM, "cpu", seed=1)
    add_all(buffer, first + second + episode(2, 2, "running"))
    batch = buffer.sample(2000)
    last_of_first = (batch.obs == torch.as_tensor(first[-1].obs)).all(-1)
    assert last_of_first.any()
    # s' is episode 0's own final observation, not the reset observation of episode 1.
    assert (batch.next_obs[last_of_first] == torch.as_tensor(first[-1].next_obs)).all()
    assert (batch.next_obs[last_of_first] != torch.as_tensor(second[0].obs)).any(-1).all()
    assert (batch.terminated[last_of_first] == 0).all()  # truncation bootstraps (eq. 8)
    last_of_second = (batch.obs == torch.as_tensor(second[-1].obs)).all(-1)
    assert last_of_second.any() and (batch.terminated[last_of_second] == 1).all()
    assert batch.terminated.sum() == last_of_second.sum()  # and nothing else is terminal


def test_wrap_around_samples_only_the_newest_capacity_minus_one() -> None:
    capacity = 20
    transitions = mixed_episodes(25, seed=2) + episode(25, 4, "running")
    assert len(transitions) > 3 * capacity
    buffer = ReplayBuffer(capacity, OBS_DIM, ACT_DIM, "cpu", seed=2)
    add_all(buffer, transitions)
    assert len(buffer) == capacity
    newest = {t.key: t for t in transitions[-(capacity - 1) :]}
    seen = check_samples(buffer, newest, 3000)
    assert seen == set(newest)


@pytest.mark.parametrize("last_end", ["terminated", "truncated", "running"])
def test_wrap_around_stays_correct_after_every_insertion(last_end: str) -> None:
    capacity = 13
    transitions = mixed_episodes(20, seed=3) + episode(20, 5, last_end)
    buffer = ReplayBuffer(capacity, OBS_DIM, ACT_DIM, "cpu", seed=3)
    for n, tr in enumerate(transitions, start=1):
        add_all(buffer, [tr])
        valid = transitions[n - (capacity - 1) : n] if n >= capacity else transitions[:n]
        check_samples(buffer, {t.key: t for t in valid}, 32)


def test_side_store_grows_with_many_truncations() -> None:
    capacity = 50
    buffer = ReplayBuffer(capacity, OBS_DIM, ACT_DIM, "cpu", seed=4)
    transitions: list[Transition] = []
    for e in range(150):
        ep = episode(e, 2, "truncated")
        add_all(buffer, ep)
        transitions += ep
        window = transitions[-(capacity - 1) :] if len(transitions) >= capacity else transitions
        check_samples(buffer, {t.key: t for t in window}, 64)
    truth = {t.key: t for t in transitions[-(capacity - 1) :]}
    assert check_samples(buffer, truth, 3000) == set(truth)
    # 25 truncations live in the ring at most: the store grows to fit them, not without bound.
    assert 25 <= buffer.final_obs.shape[0] <= 64


def test_truncate_last_marks_the_newest_transition() -> None:
    running = episode(0, 5, "running")
    after = episode(1, 3, "terminated")
    buffer = ReplayBuffer(100, OBS_DIM, ACT_DIM, "cpu", seed=5)
    add_all(buffer, running)
    buffer.truncate_last(running[-1].next_obs)
    buffer.truncate_last(running[-1].next_obs)  # a second call changes nothing
    add_all(buffer, after)  # the next episode's reset observation takes the following slot
    truth = {t.key: t for t in running + after}
    assert check_samples(buffer, truth, 3000) == set(truth)


def test_truncate_last_leaves_a_terminated_transition_terminal() -> None:
    ep = episode(0, 3, "terminated")
    buffer = ReplayBuffer(100, OBS_DIM, ACT_DIM, "cpu", seed=6)
    add_all(buffer, ep)
    buffer.truncate_last(ep[-1].next_obs)
    add_all(buffer, episode(1, 2, "running"))
    batch = buffer.sample(500)
    last = (batch.obs == torch.as_tensor(ep[-1].obs)).all(-1)
    assert last.any() and (batch.terminated[last] == 1).all()


@pytest.mark.parametrize("n_episodes", [5, 40])  # partly filled, and wrapped around
def test_state_dict_round_trip_reproduces_samples(tmp_path, n_episodes: int) -> None:
    capacity = 64
    transitions = mixed_episodes(n_episodes, seed=7)
    buffer = ReplayBuffer(capacity, OBS_DIM, ACT_DIM, "cpu", seed=7)
    add_all(buffer, transitions)
    buffer.sample(10)  # advance the generator: its state must travel too
    torch.save(buffer.state_dict(), tmp_path / "replay.pt")
    restored = ReplayBuffer(capacity, OBS_DIM, ACT_DIM, "cpu", seed=123)
    restored.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=True))
    assert len(restored) == len(buffer)
    for _ in range(3):
        for a, b in zip(buffer.sample(32), restored.sample(32), strict=True):
            assert torch.equal(a, b)
    more = episode(1000, 30, "truncated") + episode(1001, 4, "running")
    add_all(buffer, more)
    add_all(restored, more)
    for a, b in zip(buffer.sample(256), restored.sample(256), strict=True):
        assert torch.equal(a, b)
    window = (transitions + more)[-(capacity - 1) :]
    check_samples(restored, {t.key: t for t in window}, 500)


def test_load_state_dict_rejects_another_capacity_or_shape() -> None:
    buffer = ReplayBuffer(32, OBS_DIM, ACT_DIM, "cpu")
    add_all(buffer, mixed_episodes(3, seed=8))
    state = buffer.state_dict()
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(64, OBS_DIM, ACT_DIM, "cpu").load_state_dict(state)
    with pytest.raises(ValueError):
        ReplayBuffer(32, OBS_DIM + 1, ACT_DIM, "cpu").load_state_dict(state)


def test_bytes_per_transition_is_about_half_of_two_observation_copies() -> None:
    obs_dim, act_dim, capacity = 376, 17, 10_000  # Humanoid; the side store scales with capacity
    buffer = ReplayBuffer(capacity, obs_dim, act_dim, "cpu")
    two_copies = 2 * obs_dim * 4 + act_dim * 4 + 4 + 1
    assert buffer.bytes_per_transition < 0.55 * two_copies
    # The figure accounts for every tensor the buffer holds.
    held = sum(v.nbytes for v in vars(buffer).values() if isinstance(v, torch.Tensor))
    assert buffer.bytes_per_transition == pytest.approx(held / capacity)
