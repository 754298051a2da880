"""Expert parallelism on the CPU: 2 gloo ranks match the one-process MoE, overflow included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from medverse.parallel.ddp import init_distributed, launch_local, shutdown
from medverse.parallel.expert_routing import MoELayer, RoutingConfig
from medverse.parallel.experts import ExpertParallelMoE, sync_replicated_grads

pytestmark = pytest.mark.dist

WORLD = 2
TOKENS, WIDTH, OUT, EXPERTS = 24, 6, 3, 4
# 12 tokens per rank, top-2 over 4 experts: an even share is 6 slots; 0.5 gives 3, so
# assignments overflow on every rank.
CONFIG = RoutingConfig(num_experts=EXPERTS, top_k=2, capacity_factor=0.5)
AUX_WEIGHT = 0.1


def build(seed: int) -> tuple[MoELayer, torch.Tensor, torch.Tensor]:
    """Return the reference layer, the tokens and the loss weights, all from ``seed``."""
    torch.manual_seed(seed)
    gate = nn.Linear(WIDTH, EXPERTS)
    experts = nn.ModuleList(
        nn.Sequential(nn.Linear(WIDTH, 8), nn.Tanh(), nn.Linear(8, OUT)) for _ in range(EXPERTS)
    )
    layer = MoELayer(gate, experts, CONFIG, OUT)
    tokens = torch.randn(TOKENS, WIDTH) * 2.0
    loss_weights = torch.randn(TOKENS, OUT)
    return layer, tokens, loss_weights


def rank_main(seed: int, out_dir: str) -> None:
    """One rank: own half the experts and half the tokens, run forward and backward."""
    ctx = init_distributed("cpu")
    try:
        reference, tokens, loss_weights = build(seed)
        per_rank = EXPERTS // ctx.world_size
        mine = range(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
        local = nn.ModuleList(reference.experts[i] for i in mine)
        layer = ExpertParallelMoE(reference.gate, local, CONFIG, OUT)
        x = torch.tensor_split(tokens, ctx.world_size)[ctx.rank].clone().requires_grad_(True)
        w = torch.tensor_split(loss_weights, ctx.world_size)[ctx.rank]
        result = layer(x)
        loss = (result.output * w).sum() + AUX_WEIGHT * result.aux_loss / ctx.world_size
        loss.backward()
        sync_replicated_grads(layer.gate)
        grads = {
            f"experts.{i}.{n}": p.grad
            for i in mine
            for n, p in reference.experts[i].named_parameters()
        }
        grads |= {f"gate.{n}": p.grad for n, p in layer.gate.named_parameters()}
        payload = {
            "output": result.output.detach(),
            "token_grad": x.grad,
            "grads": grads,
            "dropped": result.dropped,
        }
        torch.save(payload, Path(out_dir) / f"rank{ctx.rank}.pt")
        dist.barrier()
    finally:
        shutdown(ctx)


def test_two_gloo_ranks_match_one_process_outputs_and_gradients(tmp_path: Path) -> None:
    seed = 7
    launch_local(rank_main, WORLD, (seed, str(tmp_path)))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    reference, tokens, loss_weights = build(seed)
    x = tokens.clone().requires_grad_(True)
    result = reference(x, groups=WORLD)
    ((result.output * loss_weights).sum() + AUX_WEIGHT * result.aux_loss).backward()

    assert result.dropped > 0  # the capacity limit bit
    assert sum(r["dropped"] for r in ranks) == result.dropped
    output = torch.cat([r["output"] for r in ranks])
    torch.testing.assert_close(output, result.output.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        torch.cat([r["token_grad"] for r in ranks]), x.grad, atol=1e-6, rtol=0
    )
    expected = {f"gate.{n}": p.grad for n, p in reference.gate.named_parameters()}
    expected |= {f"experts.{n}": p.grad for n, p in reference.experts.named_parameters()}
    got = ranks[0]["grads"] | ranks[1]["grads"]
    assert set(got) == set(expected)
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=0, msg=name)
