"""Checkpoints: one safe format; a reload predicts the same; bad files get a clear error."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.core.errors import ModelError
from medverse.core.volume import Volume
from medverse.inference.predictor import Predictor
from medverse.models.checkpoint import load_checkpoint, save_checkpoint
from medverse.models.factory import build_network
from medverse.models.onnx_export import weights_digest
from medverse.preprocessing.plan import Normalization, Plan

LABELS = {1: "Anterior", 2: "Posterior"}
PLAN = Plan(
    modality="MR",
    target_spacing=(1.0, 1.0, 1.0),
    patch_size=(16, 24, 16),
    normalization=Normalization.ZSCORE,
    labels=LABELS,
    preset="unet_small",
    overrides={"patch_size": [16, 24, 16]},
)


@pytest.fixture()
def trained(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    network = build_network("unet_small", 1, 3)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # not the initial weights
    path = save_checkpoint(
        tmp_path / "model.pt",
        network,
        PLAN,
        preset="unet_small",
        labels=LABELS,
        extra={"epoch": 12, "val_dice": 0.84, "history": [0.5, 0.7]},
    )
    return network, path


def test_round_trip_predicts_the_same(trained: tuple[torch.nn.Module, Path]) -> None:
    network, path = trained
    loaded = load_checkpoint(path)
    assert not loaded.network.training
    assert loaded.plan == PLAN and loaded.labels == LABELS and loaded.preset == "unet_small"
    assert (loaded.in_channels, loaded.out_channels) == (1, 3)
    assert loaded.meta["extra"] == {"epoch": 12, "val_dice": 0.84, "history": [0.5, 0.7]}
    assert set(loaded.meta["versions"]) == {"medverse", "torch", "monai"}
    x = torch.randn(1, 1, 16, 24, 16)
    with torch.no_grad():
        assert torch.equal(network.eval()(x), loaded.network(x))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left


def test_checkpoint_is_plain_data(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "medverse-checkpoint" and payload["format_version"] == 1
    assert payload["plan"]["patch_size"] == [16, 24, 16]
    assert payload["labels"] == LABELS


def test_truncated_checkpoint(trained: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    _, path = trained
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="not a readable checkpoint") as info:
        load_checkpoint(cut)
    assert info.value.path == cut


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    noise = torch.randint(
        0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    path.write_bytes(noise.numpy().tobytes())
    with pytest.raises(ModelError, match="not a readable checkpoint") as info:
        load_checkpoint(path)
    assert info.value.path == path


class Payload:
    """An arbitrary class: a safe load must refuse to construct it."""


def test_pickle_that_a_safe_load_refuses(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "medverse-checkpoint", "thing": Payload()}, path)
    with pytest.raises(ModelError, match="safe load refuses"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": Payload()}, protocol=2))
    with pytest.raises(ModelError, match="safe load refuses") as info:
        load_checkpoint(raw)
    assert info.value.path == raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "someone-else"}, "not a medverse checkpoint"),
        ({"format_version": 2}, "format version 2 is not supported"),
    ],
)
def test_wrong_format_or_version(
    trained: tuple[torch.nn.Module, Path], change: dict[str, object], message: str
) -> None:
    _, path = trained
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, **change}, path)
    with pytest.raises(ModelError, match=message):
        load_checkpoint(path)


def test_state_dict_mismatch(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    payload = torch.load(path, weights_only=True)
    other = build_network("unet_small", 1, 5).state_dict()  # 5 classes, stored as 3
    torch.save({**payload, "state_dict": other}, path)
    with pytest.raises(ModelError, match="weights do not match") as info:
        load_checkpoint(path)
    assert info.value.path == path


def test_a_lazy_load_builds_the_same_network_only_when_asked(
    trained: tuple[torch.nn.Module, Path],
) -> None:
    network, path = trained
    lazy = load_checkpoint(path, lazy=True)
    assert not lazy.network_built and lazy.plan == PLAN and lazy.labels == LABELS
    assert lazy.weights_digest() == weights_digest(network)  # the export cache's key
    assert not lazy.network_built  # the digest came from the file's weights
    x = torch.randn(1, 1, 16, 24, 16)
    with torch.no_grad():
        assert torch.equal(network.eval()(x), lazy.network(x))
    assert lazy.network_built and not lazy.network.training


def test_a_lazy_load_reports_a_weights_mismatch_when_the_network_is_built(
    trained: tuple[torch.nn.Module, Path],
) -> None:
    _, path = trained
    payload = torch.load(path, weights_only=True)
    other = build_network("unet_small", 1, 5).state_dict()  # 5 classes, stored as 3
    torch.save({**payload, "state_dict": other}, path)
    lazy = load_checkpoint(path, lazy=True)
    with pytest.raises(ModelError, match="weights do not match") as info:
        lazy.network  # noqa: B018 (building it is the test)
    assert info.value.path == path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_unsafe_extra_is_refused_and_nothing_written(tmp_path: Path) -> None:
    network = build_network("unet_small", 1, 3)
    target = tmp_path / "model.pt"
    with pytest.raises(ModelError, match="plain types"):
        save_checkpoint(
            target,
            network,
            PLAN,
            preset="unet_small",
            labels=LABELS,
            extra={"optimizer": Payload()},
        )
    assert list(tmp_path.iterdir()) == []


def test_compiled_or_wrapped_networks_save_their_inner_weights(tmp_path: Path) -> None:
    inner = build_network("unet_small", 1, 3)
    wrapped = torch.nn.DataParallel(inner)
    path = save_checkpoint(tmp_path / "m.pt", wrapped, PLAN, preset="unet_small", labels=LABELS)
    keys = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)["state_dict"].keys()
    assert not any(k.startswith("module.") for k in keys)
    load_checkpoint(path)


def _flipped(volume: Volume) -> Volume:
    """The same voxels in world space, stored with the first two axes reversed (DICOM-like)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.asarray(volume.shape[:2]) - 1
    array = np.ascontiguousarray(volume.array[::-1, ::-1])
    return Volume(array=array, affine=volume.affine @ flip, meta={})


@pytest.mark.parametrize("orientation", [None, "RAS"])
def test_a_stored_orientation_makes_the_voxel_order_irrelevant(
    trained: tuple[torch.nn.Module, Path], tmp_path: Path, orientation: str | None
) -> None:
    network = trained[0]
    path = save_checkpoint(
        tmp_path / "oriented.pt", network, PLAN, preset="unet_small", labels=LABELS,
        orientation=orientation,
    )  # fmt: skip
    model = load_checkpoint(path)
    rng = np.random.default_rng(0)
    ras = Volume(array=rng.normal(size=(16, 24, 16)).astype(np.float32), affine=np.eye(4), meta={})
    stored_flipped = _flipped(ras)

    predictor = Predictor(model, device="cpu")
    labels_ras, labels_flipped = predictor.predict(ras), predictor.predict(stored_flipped)

    assert model.orientation == orientation
    assert np.allclose(labels_flipped.affine, stored_flipped.affine)  # back on the input grid
    same = np.array_equal(labels_flipped.array[::-1, ::-1], labels_ras.array)
    assert same == (orientation == "RAS")  # without one, the network sees another image


def test_an_invalid_orientation_is_refused(
    trained: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="orientation"):
        save_checkpoint(
            tmp_path / "x.pt", trained[0], PLAN, preset="unet_small", labels=LABELS,
            orientation="RAR",
        )  # fmt: skip
    assert not (tmp_path / "x.pt").exists()
