"""The loss functions of Soft Actor-Critic, each the equation it cites.

Equation numbers refer to the SAC derivation in shared/seeds (Haarnoja et al. 2018a). Pure
tensor functions: the agents (sac.py, sac_v1.py) put them together.
"""

from __future__ import annotations

import torch


def soft_q_target(
    reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Q_hat(s, a) = r + gamma V(s') (eqs. 2, 8); no bootstrap past a termination."""
    return reward + gamma * (1.0 - terminated) * next_value


def q_loss(q_values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_Q(theta) = E[1/2 (Q_theta(s, a) - Q_hat(s, a))^2] (eq. 7), summed over the Q heads."""
    return 0.5 * (q_values - target).pow(2).mean(dim=-1).sum()


def value_loss(value: torch.Tensor, value_target: torch.Tensor) -> torch.Tensor:
    """J_V(psi) = E[1/2 (V_psi(s) - E_a[Q(s, a) - alpha log pi(a|s)])^2] (eq. 5)."""
    return 0.5 * (value - value_target).pow(2).mean()


def policy_loss(log_prob: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """J_pi(phi) = E[alpha log pi(f(eps; s)|s) - Q(s, f(eps; s))] (eq. 12; eq. 13 by autograd)."""
    return (alpha * log_prob - q).mean()
