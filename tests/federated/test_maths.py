"""Pure aggregation maths: FedAvg, FedProx term, Top-K with error feedback, bytes, central DP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medverse.core.errors import ConfigError
from medverse.federated.aggregation import fedavg, proximal_term
from medverse.federated.dp import clip_to_norm, epsilon_spent, noisy_mean
from medverse.federated.topk import (
    AgeRateSelector,
    ErrorFeedback,
    densify,
    per_site_topk,
    serialised_nbytes,
    shared_indices,
)


def test_fedavg_weights_by_examples() -> None:
    a = [np.full((2, 3), 1.0), np.array([0.0])]
    b = [np.full((2, 3), 4.0), np.array([3.0])]
    out = fedavg([a, b], [100, 200])
    np.testing.assert_allclose(out[0], np.full((2, 3), 3.0))
    np.testing.assert_allclose(out[1], [2.0])


def test_fedavg_refuses_mismatched_shapes() -> None:
    with pytest.raises(ConfigError, match="site 1 sent shapes"):
        fedavg([[np.zeros(3)], [np.zeros(4)]], [1, 1])


def test_proximal_term_value_and_gradient() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    g = torch.tensor([0.0, 0.0])
    term = proximal_term([w], [g], mu=0.5)
    assert term.item() == pytest.approx(0.25 * 5.0)
    term.backward()
    assert w.grad is not None
    np.testing.assert_allclose(w.grad.numpy(), [0.5, 1.0])  # mu * (w - g)


def test_shared_indices_identical_across_sites_and_follow_aggregate() -> None:
    prev = np.zeros(1000)
    prev[[5, 50, 500]] = [3.0, -9.0, 1.0]
    idx_site_a = shared_indices(prev, k=10, random_share=0.5, seed=7, round_=2)
    idx_site_b = shared_indices(prev.copy(), k=10, random_share=0.5, seed=7, round_=2)
    np.testing.assert_array_equal(idx_site_a, idx_site_b)
    assert {5, 50, 500} <= set(idx_site_a.tolist())
    assert len(set(idx_site_a.tolist())) == 10
    other_round = shared_indices(prev, k=10, random_share=0.5, seed=7, round_=3)
    assert set(other_round.tolist()) != set(idx_site_a.tolist())  # random share refreshes


def test_error_feedback_loses_nothing_over_rounds() -> None:
    rng = np.random.default_rng(0)
    size, k = 500, 5
    ef = ErrorFeedback(size)
    sent = np.zeros(size)
    updates = [rng.normal(size=size) for _ in range(30)]
    prev = np.zeros(size)
    for r, update in enumerate(updates):
        idx = shared_indices(prev, k, random_share=0.2, seed=1, round_=r)
        values = ef.compress_shared(update, idx)
        sent += densify(idx, values, size)
        prev = densify(idx, values, size)
    # Everything not yet sent is still held locally: sent + residual == sum of updates.
    np.testing.assert_allclose(sent + ef.residual, np.sum(updates, axis=0), atol=1e-5)


def test_shared_topk_sums_line_up_while_per_site_topk_does_not() -> None:
    rng = np.random.default_rng(1)
    size, k = 2000, 20
    updates = [rng.normal(size=size) for _ in range(3)]
    per_site = [per_site_topk(u, k)[0] for u in updates]
    assert len(set.union(*(set(i.tolist()) for i in per_site))) > k  # sets differ per site
    idx = shared_indices(np.zeros(size), k, 0.0, seed=3, round_=1)
    sums = sum(ErrorFeedback(size).compress_shared(u, idx) for u in updates)
    np.testing.assert_allclose(sums, np.sum(updates, axis=0)[idx], rtol=1e-5)


def test_serialised_bytes_of_one_percent_topk_are_over_50x_smaller() -> None:
    size = 100_000
    dense = serialised_nbytes([np.zeros(size, dtype=np.float32)])
    shared = serialised_nbytes([np.zeros(size // 100, dtype=np.float32)])
    idx, values = per_site_topk(np.arange(size, dtype=np.float32), size // 100)
    plain = serialised_nbytes([idx, values])
    assert dense >= 4 * size
    assert dense / shared > 90  # shared indices: values only
    assert dense / plain > 45  # per-site Top-K pays for the indices too


def test_clip_to_norm() -> None:
    v = np.array([3.0, 4.0])
    np.testing.assert_allclose(np.linalg.norm(clip_to_norm(v, 1.0)), 1.0)
    np.testing.assert_allclose(clip_to_norm(v, 10.0), v)


def test_noisy_mean_noise_scale() -> None:
    updates = [np.zeros(20_000) for _ in range(4)]
    out = noisy_mean(updates, noise_multiplier=2.0, clip_norm=0.5, seed=0)
    assert np.std(out) == pytest.approx(2.0 * 0.5 / 4, rel=0.03)


def test_epsilon_from_rdp_accountant_grows_with_rounds_and_shrinks_with_noise() -> None:
    eps_10 = epsilon_spent(1.0, rounds=10, delta=1e-5)
    assert eps_10 == pytest.approx(19.05, abs=0.1)  # dp_accounting RDP, sigma=1, 10 rounds
    assert epsilon_spent(1.0, rounds=20, delta=1e-5) > eps_10
    assert epsilon_spent(4.0, rounds=10, delta=1e-5) < eps_10
    assert epsilon_spent(0.0, rounds=1, delta=1e-5) == float("inf")


def test_age_rate_indices_rotate_and_are_the_same_for_every_replay() -> None:
    a = AgeRateSelector([600, 400], k=10, random_share=0.0, seed=3)
    b = AgeRateSelector([600, 400], k=10, random_share=0.0, seed=3)
    for r in range(1, 6):
        ia, ib = a.select(r), b.select(r)
        np.testing.assert_array_equal(ia, ib)
        assert len(set(ia.tolist())) == 10
        a.update(ia, np.ones(10))
        b.update(ib, np.ones(10))
        assert not set(ia.tolist()) & set(a.select(r + 1).tolist())  # just sent: age 0


def test_age_rate_leaves_less_pending_than_last_aggregate() -> None:
    # Per-coordinate drift with log-normal rates plus noise: the share of the summed update
    # still held at the site (the residual) after 80 rounds of 1 % Top-K with error feedback.
    rng = np.random.default_rng(0)
    size, k, rounds = 5000, 50, 80
    drift = rng.lognormal(0.0, 1.5, size) * rng.choice([-1.0, 1.0], size)
    updates = [
        drift + rng.normal(scale=0.5 * np.abs(drift).mean(), size=size) for _ in range(rounds)
    ]
    total = np.linalg.norm(np.sum(updates, axis=0))
    pending = {}
    for rule in ("last-aggregate", "age-rate"):
        ef, prev = ErrorFeedback(size), np.zeros(size)
        selector = AgeRateSelector([size], k, random_share=0.5, seed=1)
        for r, update in enumerate(updates, start=1):
            if rule == "age-rate":
                idx = selector.select(r)
            else:
                idx = shared_indices(prev, k, random_share=0.5, seed=1, round_=r)
            values = ef.compress_shared(update, idx)
            selector.update(idx, values)
            prev = densify(idx, values, size)
        pending[rule] = float(np.linalg.norm(ef.residual) / total)
    # measured: 0.887 (last-aggregate) and 0.738 (age-rate)
    assert pending["age-rate"] < 0.9 * pending["last-aggregate"], pending


def test_leaky_error_feedback_forgets_old_residual_and_keeps_what_it_sends() -> None:
    size = 8
    ef = ErrorFeedback(size, decay=0.5)
    idx = np.array([0, 1])
    first = ef.compress_shared(np.full(size, 4.0), idx)  # sends 4 at 0 and 1, holds 4 elsewhere
    np.testing.assert_allclose(first, [4.0, 4.0])
    second = ef.compress_shared(np.full(size, 1.0), np.array([2, 3]))  # 0.5 * 4 + 1 = 3
    np.testing.assert_allclose(second, [3.0, 3.0])
    np.testing.assert_allclose(ef.residual[[0, 1]], [1.0, 1.0])  # sent last round: new only
    np.testing.assert_allclose(ef.residual[4:], [3.0] * 4)
    with pytest.raises(ConfigError, match="decay"):
        ErrorFeedback(size, decay=0.0)


def test_leaky_error_feedback_sends_recent_drift_sooner_than_undamped() -> None:
    # A drift that changes sign halfway: after 1 % Top-K rounds, the values sent in the last
    # rounds point the way the updates now go more often with the leaky residual.
    rng = np.random.default_rng(0)
    size, k, rounds = 4000, 40, 120
    drift = rng.lognormal(0.0, 1.0, size) * rng.choice([-1.0, 1.0], size)
    agree = {}
    for decay in (1.0, 0.95):
        ef = ErrorFeedback(size, decay=decay)
        selector = AgeRateSelector([size], k, random_share=0.5, seed=1)
        hits = []
        for r in range(1, rounds + 1):
            sign = 1.0 if r <= rounds // 2 else -1.0
            update = sign * drift + rng.normal(scale=0.3 * np.abs(drift).mean(), size=size)
            idx = selector.select(r)
            values = ef.compress_shared(update, idx)
            selector.update(idx, values)
            if r > rounds - 20:
                hits.append(np.mean(np.sign(values) == np.sign(sign * drift[idx])))
        agree[decay] = float(np.mean(hits))
    assert agree[0.95] > agree[1.0] + 0.1, agree  # measured: 0.61 (decay 1), 0.997 (0.95)
