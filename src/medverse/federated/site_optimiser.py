"""A site's AdamW moments kept across rounds in its Flower ``Context.state`` (never sent)."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict

RECORD = "site-optimiser"
_MOMENTS = ("exp_avg", "exp_avg_sq", "step")


def save_moments(optimiser: torch.optim.Optimizer, state: RecordDict) -> None:
    """Store the optimiser's per-parameter moments in ``state`` (the site's Context.state).

    The moments stay at the site: ``state`` is never part of a reply.
    """
    arrays: dict[str, Array] = {}
    for index, moments in optimiser.state_dict()["state"].items():
        for name in _MOMENTS:
            value = moments[name]
            arrays[f"{index}.{name}"] = Array(np.asarray(value.detach().cpu().numpy()))
    state.array_records[RECORD] = ArrayRecord(arrays)


def load_moments(optimiser: torch.optim.Optimizer, state: RecordDict) -> bool:
    """Put the moments saved by ``save_moments`` back; False when none were saved yet.

    The optimiser must be over a network of the same architecture (parameters in the same
    order), as every round's local copy of the global model is.
    """
    if RECORD not in state.array_records:
        return False
    record = state.array_records[RECORD]
    saved = optimiser.state_dict()
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key in record:
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = torch.as_tensor(record[key].numpy().copy())
    saved["state"] = per_param
    optimiser.load_state_dict(saved)
    return True
