"""adam_step is torch's fused Adam step without its Python: the same numbers, bit for bit."""

from __future__ import annotations

import copy

import torch

from sac_cli.training.optim import adam, adam_step


def two_networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return torch.nn.Linear(5, 7), torch.nn.Sequential(torch.nn.Linear(7, 3), torch.nn.Linear(3, 2))


def step_both(step, nets, optimizer, grads) -> None:
    """Give each parameter its gradient (None: it takes no step), then step."""
    params = [p for net in nets for p in net.parameters()]
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad
    step(optimizer)


def test_adam_step_gives_optimizer_step_bit_for_bit() -> None:
    runs = []
    for step in (torch.optim.Adam.step, adam_step):
        nets = two_networks()
        optimizer = adam([{"params": list(nets[0].parameters()), "lr": 3e-4},
                          {"params": list(nets[1].parameters()), "lr": 1e-3}])  # fmt: skip
        params = [p for net in nets for p in net.parameters()]
        g = torch.Generator().manual_seed(1)
        for i in range(6):
            grads = [torch.randn(p.shape, generator=g) for p in params]
            if i % 2:  # the second network's branch sits this one out
                grads[2:] = [None] * len(grads[2:])
            step_both(step, nets, optimizer, grads)
            if i == 3:  # a resume: the state comes back as new tensors
                optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        runs.append((params, optimizer.state_dict()["state"]))
    (params, state), (lean_params, lean_state) = runs
    assert all(torch.equal(p, q) for p, q in zip(params, lean_params, strict=True))
    assert state.keys() == lean_state.keys()
    for index, moments in state.items():
        assert all(torch.equal(moments[k], lean_state[index][k]) for k in moments)
    # The second network took 3 of the 6 steps, and its step count says so.
    assert lean_state[2]["step"] == 3 and lean_state[0]["step"] == 6


def test_adam_step_leaves_other_optimizers_to_their_own_step() -> None:
    """An Adam without the fused kernel (foreach) steps as its own step() would."""
    nets = [two_networks(), two_networks()]
    optimizers = [
        torch.optim.Adam([p for net in pair for p in net.parameters()], lr=1e-3, foreach=True)
        for pair in nets
    ]
    grads = [torch.ones_like(p) for p in optimizers[0].param_groups[0]["params"]]
    for _ in range(2):
        step_both(torch.optim.Adam.step, nets[0], optimizers[0], grads)
        step_both(adam_step, nets[1], optimizers[1], grads)
    for a, b in zip(*(o.param_groups[0]["params"] for o in optimizers), strict=True):
        assert torch.equal(a, b)
