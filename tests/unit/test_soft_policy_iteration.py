"""Maximum-entropy RL theory behind SAC, checked exactly on small random finite MDPs.

Equation numbers refer to Haarnoja et al., "Soft Actor-Critic: Off-Policy Maximum Entropy
Deep Reinforcement Learning with a Stochastic Actor" (ICML 2018):

* eq. 3   soft state value   V(s) = E_{a~pi}[Q(s, a) - alpha * log pi(a|s)]
* eq. 2/15 soft Bellman backup (soft policy evaluation)
          (T^pi Q)(s, a) = r(s, a) + gamma * E_{s'~P}[V(s')]
* eq. 16  soft policy improvement
          pi_new(.|s) = argmin_pi' KL(pi'(.|s) || exp(Q^old(s, .) / alpha) / Z(s))
* eq. 17/18  E_{a~pi_new}[Q^old(s, a) - alpha * log pi_new(a|s)] >= V^old(s)
* eq. 19  Q^new(s, a) >= Q^old(s, a)
* Theorem 1  soft policy iteration converges to the optimal maximum-entropy policy pi*.

Everything is pure numpy: the MDPs have 5 states and 3 actions, so policy evaluation is an
exact 15x15 linear solve and the whole module runs in well under a second.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

N_STATES = 5
N_ACTIONS = 3
GAMMA = 0.9
SEEDS = [0, 1, 2, 3]
ALPHAS = [1.0, 0.2]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class MDP(NamedTuple):
    P: np.ndarray  # transition probabilities P[s, a, s'], shape (S, A, S)
    r: np.ndarray  # rewards r[s, a], shape (S, A)
    gamma: float


def random_mdp(seed: int, n_states: int = N_STATES, n_actions: int = N_ACTIONS) -> MDP:
    """A dense random MDP: Dirichlet transition rows and uniform rewards in [0, 1)."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    r = rng.uniform(0.0, 1.0, size=(n_states, n_actions))
    return MDP(P=P, r=r, gamma=GAMMA)


def random_policy(
    rng: np.random.Generator, n_states: int = N_STATES, n_actions: int = N_ACTIONS
) -> np.ndarray:
    """A random strictly positive stochastic policy pi[s, a] (rows sum to one)."""
    return softmax(rng.normal(scale=2.0, size=(n_states, n_actions)))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.exp(x - m).sum(axis=axis))


def safe_log(pi: np.ndarray) -> np.ndarray:
    """log pi with log 0 := 0, so that pi * log pi = 0 for deterministic policies."""
    return np.log(np.where(pi > 0.0, pi, 1.0))


def entropy(pi: np.ndarray) -> np.ndarray:
    """Per-state entropy H(pi(.|s)), shape (S,)."""
    return -(pi * safe_log(pi)).sum(axis=-1)


def soft_value(Q: np.ndarray, pi: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 3: V(s) = E_{a~pi}[Q(s, a) - alpha * log pi(a|s)], shape (S,)."""
    return (pi * (Q - alpha * safe_log(pi))).sum(axis=-1)


def soft_bellman_backup(Q: np.ndarray, pi: np.ndarray, mdp: MDP, alpha: float) -> np.ndarray:
    """Eqs. 2 and 15: (T^pi Q)(s, a) = r(s, a) + gamma * E_{s'~P(.|s,a)}[V(s')]."""
    return mdp.r + mdp.gamma * mdp.P @ soft_value(Q, pi, alpha)


def soft_policy_evaluation(pi: np.ndarray, mdp: MDP, alpha: float) -> np.ndarray:
    """Exact soft Q^pi: the unique fixed point of eq. 15, by one linear solve.

    Q = r_pi + gamma * P Pi Q, with the entropy bonus folded into the reward,
    r_pi(s, a) = r(s, a) + gamma * E_{s'}[alpha * H(pi(.|s'))], and
    (P Pi)[(s, a), (s', a')] = P(s'|s, a) * pi(a'|s').
    """
    n_states, n_actions = mdp.r.shape
    r_pi = mdp.r + mdp.gamma * mdp.P @ (alpha * entropy(pi))
    P_Pi = (mdp.P[:, :, :, None] * pi[None, None, :, :]).reshape(
        n_states * n_actions, n_states * n_actions
    )
    A = np.eye(n_states * n_actions) - mdp.gamma * P_Pi
    return np.linalg.solve(A, r_pi.reshape(-1)).reshape(n_states, n_actions)


def soft_state_value(Q: np.ndarray, alpha: float) -> np.ndarray:
    """V_soft(s) = alpha * logsumexp(Q(s, .) / alpha) = alpha * log Z(s), shape (S,)."""
    return alpha * logsumexp(Q / alpha, axis=-1)


def boltzmann_policy(Q: np.ndarray, alpha: float) -> np.ndarray:
    """Closed-form solution of eq. 16: pi(a|s) = exp((Q(s, a) - V_soft(s)) / alpha)."""
    return np.exp((Q - soft_state_value(Q, alpha)[:, None]) / alpha)


def kl_objective(pi_prime: np.ndarray, Q: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 16 objective per state: J(pi') = KL(pi'(.|s) || exp(Q(s, .) / alpha) / Z(s)).

    Written out from the definition (not via the Boltzmann policy):
    J = sum_a pi'(a|s) * (log pi'(a|s) - Q(s, a) / alpha) + log Z(s).
    """
    log_z = logsumexp(Q / alpha, axis=-1)
    return (pi_prime * (safe_log(pi_prime) - Q / alpha)).sum(axis=-1) + log_z


def soft_value_iteration(
    mdp: MDP, alpha: float, tol: float = 1e-13, max_iter: int = 10_000
) -> np.ndarray:
    """Optimal soft Q* by soft value iteration.

    Q*(s, a) = r(s, a) + gamma * E_{s'}[alpha * logsumexp(Q*(s', .) / alpha)].
    """
    Q = np.zeros_like(mdp.r)
    for _ in range(max_iter):
        Q_next = mdp.r + mdp.gamma * mdp.P @ soft_state_value(Q, alpha)
        if np.max(np.abs(Q_next - Q)) < tol:
            return Q_next
        Q = Q_next
    raise AssertionError("soft value iteration did not converge")


def soft_policy_iteration(
    mdp: MDP,
    alpha: float,
    pi0: np.ndarray,
    n_iter: int,
    improve: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Alternate exact soft policy evaluation (eq. 15) and improvement (eq. 16).

    Returns the policies pi_0..pi_n and their soft Q-functions Q^{pi_0}..Q^{pi_n}.
    ``improve(Q)`` defaults to the correct Boltzmann improvement at temperature alpha.
    """
    if improve is None:
        improve = functools.partial(boltzmann_policy, alpha=alpha)
    policies = [pi0]
    qs = [soft_policy_evaluation(pi0, mdp, alpha)]
    for _ in range(n_iter):
        policies.append(improve(qs[-1]))
        qs.append(soft_policy_evaluation(policies[-1], mdp, alpha))
    return policies, qs


mdp_and_alpha = pytest.mark.parametrize(
    "seed,alpha", [(seed, alpha) for seed in SEEDS for alpha in ALPHAS]
)


# --------------------------------------------------------------------------------------------
# 1. Soft policy evaluation (eqs. 2, 3, 15)
# --------------------------------------------------------------------------------------------


@mdp_and_alpha
def test_iterated_soft_backup_converges_to_exact_soft_q(seed, alpha):
    """Repeating the backup of eq. 15 from Q = 0 reaches the linear-solve fixed point Q^pi."""
    mdp = random_mdp(seed)
    pi = random_policy(np.random.default_rng(100 + seed))
    Q_exact = soft_policy_evaluation(pi, mdp, alpha)

    # The linear solution really is a fixed point of the backup ...
    np.testing.assert_allclose(
        soft_bellman_backup(Q_exact, pi, mdp, alpha), Q_exact, rtol=0, atol=1e-10
    )

    # ... and iterating the backup converges to it.
    Q = np.zeros_like(mdp.r)
    for _ in range(400):  # 0.9**400 ~ 5e-19
        Q = soft_bellman_backup(Q, pi, mdp, alpha)
    np.testing.assert_allclose(Q, Q_exact, rtol=0, atol=1e-8)

    # The entropy bonus matters: Q^pi differs from the plain (alpha = 0) Q-function.
    Q_plain = soft_policy_evaluation(pi, mdp, 0.0)
    assert np.all(Q_exact > Q_plain + 1e-3)


@mdp_and_alpha
def test_soft_backup_is_a_gamma_contraction(seed, alpha):
    """||T^pi Q1 - T^pi Q2||_inf <= gamma ||Q1 - Q2||_inf, and the modulus gamma is attained."""
    mdp = random_mdp(seed)
    rng = np.random.default_rng(200 + seed)
    pi = random_policy(rng)

    ratios = []
    for _ in range(200):
        Q1 = rng.normal(scale=10.0, size=mdp.r.shape)
        Q2 = rng.normal(scale=10.0, size=mdp.r.shape)
        num = np.max(
            np.abs(
                soft_bellman_backup(Q1, pi, mdp, alpha) - soft_bellman_backup(Q2, pi, mdp, alpha)
            )
        )
        ratios.append(num / np.max(np.abs(Q1 - Q2)))
    assert max(ratios) <= mdp.gamma + 1e-12
    assert min(ratios) >= 0.0

    # A constant shift c is contracted by exactly gamma: the bound is tight.
    Q1 = rng.normal(size=mdp.r.shape)
    T_shifted = soft_bellman_backup(Q1 + 3.0, pi, mdp, alpha)
    shifted = T_shifted - soft_bellman_backup(Q1, pi, mdp, alpha)
    np.testing.assert_allclose(shifted, mdp.gamma * 3.0, rtol=0, atol=1e-12)

    # Along the iteration, the error to Q^pi shrinks by at least gamma per backup.
    Q_exact = soft_policy_evaluation(pi, mdp, alpha)
    Q = rng.normal(scale=10.0, size=mdp.r.shape)
    err = np.max(np.abs(Q - Q_exact))
    for _ in range(50):
        Q = soft_bellman_backup(Q, pi, mdp, alpha)
        new_err = np.max(np.abs(Q - Q_exact))
        assert new_err <= mdp.gamma * err + 1e-12
        err = new_err


# --------------------------------------------------------------------------------------------
# 2. Policy improvement as KL minimisation (eq. 16)
# --------------------------------------------------------------------------------------------


@mdp_and_alpha
def test_numerical_kl_minimiser_is_the_boltzmann_policy(seed, alpha):
    """Gradient descent on J(softmax(theta)) of eq. 16 lands on exp((Q - V_soft) / alpha)."""
    mdp = random_mdp(seed)
    rng = np.random.default_rng(300 + seed)
    Q = soft_policy_evaluation(random_policy(rng), mdp, alpha)

    theta = rng.normal(scale=3.0, size=Q.shape)  # arbitrary starting logits
    J_start = kl_objective(softmax(theta), Q, alpha)
    for _ in range(5000):
        pi = softmax(theta)
        g = safe_log(pi) - Q / alpha  # dJ/dpi, up to a constant that the softmax Jacobian kills
        grad = pi * (g - (pi * g).sum(axis=-1, keepdims=True))
        theta -= 2.0 * grad
    pi_opt = softmax(theta)

    np.testing.assert_allclose(pi_opt, boltzmann_policy(Q, alpha), rtol=0, atol=1e-6)
    np.testing.assert_allclose(kl_objective(pi_opt, Q, alpha), 0.0, atol=1e-10)
    assert np.all(J_start > 1e-3)  # the descent actually had work to do


@mdp_and_alpha
def test_boltzmann_policy_beats_random_and_perturbed_policies(seed, alpha):
    """J(pi_Boltzmann) = 0 <= J(pi') for random policies and for small perturbations."""
    mdp = random_mdp(seed)
    rng = np.random.default_rng(400 + seed)
    Q = soft_policy_evaluation(random_policy(rng), mdp, alpha)
    pi_b = boltzmann_policy(Q, alpha)
    J_b = kl_objective(pi_b, Q, alpha)

    np.testing.assert_allclose(pi_b.sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(J_b, 0.0, atol=1e-12)

    for _ in range(500):
        assert np.all(kl_objective(random_policy(rng), Q, alpha) > J_b)

    logits_b = np.log(pi_b)
    for _ in range(200):
        delta = rng.normal(size=Q.shape)
        delta -= delta.mean(axis=-1, keepdims=True)  # a shift of all logits is not a change
        for eps in (1e-2, -1e-2, 1e-3):
            assert np.all(kl_objective(softmax(logits_b + eps * delta), Q, alpha) > J_b)


# --------------------------------------------------------------------------------------------
# 3. Soft policy improvement lemma (eqs. 17-19)
# --------------------------------------------------------------------------------------------


@mdp_and_alpha
def test_soft_policy_improvement_lemma(seed, alpha):
    """Eq. 18 holds in every state and eq. 19 for every (s, a), strictly somewhere."""
    mdp = random_mdp(seed)
    pi_old = random_policy(np.random.default_rng(500 + seed))
    Q_old = soft_policy_evaluation(pi_old, mdp, alpha)
    pi_new = boltzmann_policy(Q_old, alpha)
    Q_new = soft_policy_evaluation(pi_new, mdp, alpha)

    # Eq. 18: E_{pi_new}[Q_old - alpha log pi_new] >= V^{pi_old}(s) for every s ...
    lhs = soft_value(Q_old, pi_new, alpha)
    V_old = soft_value(Q_old, pi_old, alpha)
    assert np.all(lhs >= V_old - 1e-12)
    assert np.max(lhs - V_old) > 1e-4
    # ... and the left-hand side is the maximum possible, alpha * log Z(s).
    np.testing.assert_allclose(lhs, soft_state_value(Q_old, alpha), rtol=0, atol=1e-12)

    # Eq. 19: Q^{pi_new} >= Q^{pi_old} everywhere, strictly where pi_old is not optimal.
    assert np.all(Q_new >= Q_old - 1e-10)
    assert np.max(Q_new - Q_old) > 1e-3


# --------------------------------------------------------------------------------------------
# 4. Soft policy iteration reaches the optimal maximum-entropy policy (Theorem 1)
# --------------------------------------------------------------------------------------------


@mdp_and_alpha
def test_soft_policy_iteration_converges_to_optimal_soft_policy(seed, alpha):
    """Q^{pi_k} rises monotonically to Q* of soft value iteration; pi* = Boltzmann(Q*)."""
    mdp = random_mdp(seed)
    pi0 = random_policy(np.random.default_rng(600 + seed))
    policies, qs = soft_policy_iteration(mdp, alpha, pi0, n_iter=60)
    Q_star = soft_value_iteration(mdp, alpha)

    for Q_prev, Q_next in zip(qs[:-1], qs[1:], strict=True):
        assert np.all(Q_next >= Q_prev - 1e-10)
    assert np.max(qs[-1] - qs[0]) > 1e-3  # the random start was not already optimal

    np.testing.assert_allclose(qs[-1], Q_star, rtol=0, atol=1e-6)
    np.testing.assert_allclose(policies[-1], boltzmann_policy(Q_star, alpha), rtol=0, atol=1e-6)

    # The Boltzmann policy of Q* is self-consistent: its own soft Q-function is Q*.
    pi_star = boltzmann_policy(Q_star, alpha)
    np.testing.assert_allclose(
        soft_policy_evaluation(pi_star, mdp, alpha), Q_star, rtol=0, atol=1e-9
    )


@mdp_and_alpha
def test_optimal_soft_policy_dominates_other_policies(seed, alpha):
    """Q^{pi*}(s, a) >= Q^{pi'}(s, a) for every (s, a) and many random policies pi'."""
    mdp = random_mdp(seed)
    rng = np.random.default_rng(700 + seed)
    Q_star = soft_value_iteration(mdp, alpha)

    for _ in range(200):
        Q_other = soft_policy_evaluation(random_policy(rng), mdp, alpha)
        assert np.all(Q_star >= Q_other - 1e-10)

    # Deterministic policies (zero entropy bonus) are dominated too.
    for _ in range(20):
        greedy = np.eye(mdp.r.shape[1])[rng.integers(mdp.r.shape[1], size=mdp.r.shape[0])]
        assert np.all(Q_star > soft_policy_evaluation(greedy, mdp, alpha))


# --------------------------------------------------------------------------------------------
# 5. The checks above can fail: wrong improvement steps do not reach the soft optimum
# --------------------------------------------------------------------------------------------


def _hard_greedy(Q: np.ndarray) -> np.ndarray:
    return np.eye(Q.shape[1])[np.argmax(Q, axis=1)]


@pytest.mark.parametrize("wrong_step", ["double_temperature", "hard_max"])
@mdp_and_alpha
def test_wrong_improvement_misses_the_soft_optimum(seed, alpha, wrong_step):
    """Improving with temperature 2*alpha, or with the hard max, breaks Q^pi = Q*."""
    mdp = random_mdp(seed)
    pi0 = random_policy(np.random.default_rng(800 + seed))
    if wrong_step == "double_temperature":
        improve = functools.partial(boltzmann_policy, alpha=2.0 * alpha)
    else:
        improve = _hard_greedy
    policies, qs = soft_policy_iteration(mdp, alpha, pi0, n_iter=60, improve=improve)
    Q_star = soft_value_iteration(mdp, alpha)

    # The identities that the correct iteration satisfies to 1e-6 are violated by a lot.
    assert np.max(np.abs(qs[-1] - Q_star)) > 1e-2
    assert np.max(np.abs(policies[-1] - boltzmann_policy(Q_star, alpha))) > 1e-2
    fixed_point_residual = np.max(np.abs(policies[-1] - boltzmann_policy(qs[-1], alpha)))
    assert fixed_point_residual > 1e-2
    # And the result is strictly worse than the optimum somewhere.
    assert np.all(qs[-1] <= Q_star + 1e-10)
    assert np.max(Q_star - qs[-1]) > 1e-2
