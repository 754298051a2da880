"""A site's AdamW moments survive the round in its Context.state; SecAgg+ vectors packed narrow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import RecordDict
from flwr.common import bytes_to_ndarray, ndarray_to_bytes

from medverse.core.errors import ConfigError
from medverse.federated.app.packing import pack_masked, packed_dtype
from medverse.federated.site_optimiser import RECORD, load_moments, save_moments


def _steps(network: torch.nn.Module, optimiser: torch.optim.Optimizer, n: int) -> None:
    torch.manual_seed(1)
    for _ in range(n):
        loss = network(torch.randn(4, 3)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def test_moments_kept_in_context_state_continue_the_same_optimiser() -> None:
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in network.state_dict().items()}
    straight = torch.optim.AdamW(network.parameters(), lr=0.01)
    _steps(network, straight, 3)
    _steps(network, straight, 2)  # five steps, one optimiser
    expected = {k: v.clone() for k, v in network.state_dict().items()}

    state = RecordDict()
    network.load_state_dict(start)
    first = torch.optim.AdamW(network.parameters(), lr=0.01)
    assert not load_moments(first, state)  # round 1: nothing saved yet
    _steps(network, first, 3)
    save_moments(first, state)
    again = torch.nn.Linear(3, 2)  # next round: a new local copy of the model
    again.load_state_dict(network.state_dict())
    second = torch.optim.AdamW(again.parameters(), lr=0.01)
    assert load_moments(second, state)
    _steps(again, second, 2)
    for key, value in again.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert {k.split(".", 1)[1] for k in state.array_records[RECORD]} == {
        "exp_avg", "exp_avg_sq", "step",
    }  # fmt: skip


def test_packed_masked_vectors_sum_the_same_mod_2_32() -> None:
    rng = np.random.default_rng(0)
    modulus = 2**32
    sites = [rng.integers(0, modulus, size=1000, dtype=np.int64) for _ in range(4)]
    packed = [
        bytes_to_ndarray(b) for b in pack_masked([ndarray_to_bytes(a) for a in sites], modulus)
    ]
    assert all(p.dtype == np.uint32 for p in packed)
    total = packed[0]
    for p in packed[1:]:
        total = total + p  # wraps at 2**32, as the server's parameters_addition does
    assert np.array_equal(total.astype(np.int64) & (modulus - 1), sum(sites) % modulus)
    narrow = len(pack_masked([ndarray_to_bytes(sites[0])], modulus)[0])
    assert narrow < 0.55 * len(ndarray_to_bytes(sites[0]))  # 4 bytes a value instead of 8


def test_packing_refuses_values_outside_the_modulus_and_odd_moduli() -> None:
    with pytest.raises(ConfigError, match="outside"):
        pack_masked([ndarray_to_bytes(np.array([2**16], dtype=np.int64))], 2**16)
    with pytest.raises(ConfigError, match="2\\*\\*32"):
        packed_dtype(10**6)
