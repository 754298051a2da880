"""MONAI bundles: a bundle the test builds (spleen_ct_segmentation's layout) runs in medverse.

The bundle's network is fitted here to the real CT's liver through MONAI's own preprocessing
(RAS orientation, 16 x 16 x 8 mm, soft-tissue window), as a bundle author would train it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    Spacingd,
)

from medverse.cli.main import main
from medverse.core.errors import ModelError
from medverse.core.volume import LabelMap
from medverse.engine.backends import cpu_has_bf16
from medverse.inference.loading import load_model
from medverse.inference.predictor import Predictor
from medverse.io.nifti import read_nifti, read_nifti_labels, write_nifti
from medverse.models.bundles.bundle import BundleModel, load_bundle
from medverse.models.bundles.described import description_cache_dir
from medverse.models.bundles.plan import window_fields
from medverse.models.onnx_export import weights_digest
from medverse.preprocessing.normalize import normalize_intensity
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_to_spacing
from tests.conftest import CT_SERIES
from tests.inference.helpers import dice, read_ct

SPACING = [16.0, 16.0, 8.0]
ROI = [32, 32, 8]  # the whole 31 x 31 x 5 image in one window
WINDOW = {"a_min": -160, "a_max": 240, "b_min": 0.0, "b_max": 1.0, "clip": True}
NETWORK_DEF = {
    "_target_": "UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 2,
    "channels": [16, 32, 64],
    "strides": [2, 2],
    "num_res_units": 2,
    "norm": "batch",
}
OUTPUTS = ["labels.nii.gz", "meshes.glb", "overview.png", "report.json", "seg.dcm"]


def inference_config(**changes: Any) -> dict[str, Any]:
    """An inference.json modelled on spleen_ct_segmentation's (smaller network and grid)."""
    config: dict[str, Any] = {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "/workspace/data/Task09_Spleen",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": NETWORK_DEF,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image"},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": SPACING, "mode": "bilinear"},
                {"_target_": "ScaleIntensityRanged", "keys": "image", **WINDOW},
                {"_target_": "EnsureTyped", "keys": "image"},
            ],
        },
        "dataset": {
            "_target_": "Dataset",
            "data": "$[{'image': i} for i in @datalist]",
            "transform": "@preprocessing",
        },
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": ROI,
            "sw_batch_size": 4,
            "overlap": 0.5,
            "mode": "gaussian",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing"},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            ],
        },
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataset",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
        },
        "checkpointloader": {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
        },
        "initialize": ["$monai.utils.set_determinism(seed=123)", "$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }
    config.update(changes)
    return config


def metadata(channel_def: dict[str, str] | None = None, modality: str = "CT") -> dict[str, Any]:
    """A metadata.json in the model zoo's schema."""
    channels = channel_def or {"0": "background", "1": "liver"}
    return {
        "version": "0.1.0",
        "task": "liver segmentation (test bundle)",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield",
                    "modality": modality,
                    "num_channels": 1,
                    "spatial_shape": ROI,
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(channels),
                    "channel_def": channels,
                }
            },
        },
    }


def write_bundle(
    root: Path,
    weights: dict[str, torch.Tensor] | None,
    *,
    config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    config_name: str = "inference.json",
) -> Path:
    """Lay out a bundle as the model zoo ships it."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    text = json.dumps(config or inference_config(), indent=1)
    (root / "configs" / config_name).write_text(text)
    (root / "configs" / "metadata.json").write_text(json.dumps(meta or metadata(), indent=1))
    if weights is not None:
        torch.save(weights, root / "models" / "model.pt")
    return root


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real CT and its liver, at the bundle's spacing, as NIfTI (LPS, like the DICOM)."""
    ct, reference = read_ct()
    liver = LabelMap((reference.array == 5).astype(np.uint8), ct.affine, labels={1: "liver"})
    folder = tmp_path_factory.mktemp("ct8")
    image = write_nifti(resample_to_spacing(ct, SPACING, order=1), folder / "ct.nii.gz")
    label = write_nifti(resample_to_spacing(liver, SPACING, order=0), folder / "liver.nii.gz")
    return image, label


@pytest.fixture(scope="module")
def weights(ct_files: tuple[Path, Path]) -> dict[str, torch.Tensor]:
    """NETWORK_DEF fitted to the liver on MONAI-preprocessed (RAS) data: a bundle's model.pt."""
    image, label = ct_files
    keys = ["image", "label"]
    prepare = Compose(
        [
            LoadImaged(keys=keys),
            EnsureChannelFirstd(keys=keys),
            Orientationd(keys=keys, axcodes="RAS"),
            Spacingd(keys=keys, pixdim=SPACING, mode=("bilinear", "nearest")),
            ScaleIntensityRanged(keys="image", **WINDOW),
        ]
    )
    data = prepare({"image": str(image), "label": str(label)})
    gaps = [r - n for r, n in zip(ROI, data["image"].shape[1:])]
    pads = [p for g in reversed(gaps) for p in (g // 2, g - g // 2)]  # as the sliding window
    x = torch.nn.functional.pad(data["image"].as_tensor()[None], pads)
    y = torch.nn.functional.pad(data["label"].as_tensor()[None], pads)
    torch.manual_seed(0)
    network = ConfigParser({"net": NETWORK_DEF}).get_parsed_content("net")
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    network.train()
    for _ in range(25):
        optimizer.zero_grad()
        loss(network(x), y).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, weights: dict) -> Path:
    """The test bundle with the fitted weights."""
    return write_bundle(tmp_path_factory.mktemp("bundles") / "liver_ct", weights)


def test_plan_follows_the_bundle_configs(bundle: Path) -> None:
    model = load_bundle(bundle)
    plan = model.plan
    assert plan.target_spacing == tuple(SPACING) and plan.patch_size == tuple(ROI)
    assert plan.normalization == "ct_window" and plan.modality == "CT"
    assert (plan.clip_low, plan.clip_high) == (-160.0, 240.0)
    assert plan.labels == {1: "liver"} == model.labels
    assert model.orientation == "RAS" and not model.network.training
    assert model.meta["weights"] == "model.pt" and model.meta["bundle"] == "liver_ct"


@pytest.mark.parametrize(
    ("b_min", "b_max", "clip"), [(0.0, 1.0, True), (-1.0, 3.0, True), (0.0, 1.0, False)]
)
def test_window_equals_monai_scale_intensity_range(b_min: float, b_max: float, clip: bool) -> None:
    hu = np.linspace(-1200.0, 1800.0, 3001, dtype=np.float32)
    fields = window_fields(-57, 164, b_min, b_max, clip)
    plan = Plan(
        modality="CT",
        target_spacing=(1.5, 1.5, 2.0),
        patch_size=(96, 96, 96),
        labels={1: "spleen"},
        preset="bundle:spleen",
        **fields,
    )
    monai = ScaleIntensityRange(-57, 164, b_min, b_max, clip=clip)(hu)
    assert np.allclose(normalize_intensity(hu, plan), np.asarray(monai), atol=1e-5)


def test_segment_cli_runs_the_bundle_on_the_dicom_series(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["segment", str(CT_SERIES), "--bundle", str(bundle), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    ct, reference = read_ct()
    labels = read_nifti_labels(out / "labels.nii.gz")
    assert labels.shape == ct.shape and np.allclose(labels.affine, ct.affine)
    # fitted on RAS arrays, run on the LPS series: Dice 0.84 here, 0.0 if the
    # orientation were ignored (the liver looked for on the wrong side)
    assert dice(labels.array == 1, reference.array == 5) > 0.75
    assert "liver:" in capsys.readouterr().out


def test_load_model_reads_a_bundle_folder(bundle: Path) -> None:
    model = load_model(bundle)
    assert isinstance(model, BundleModel) and model.orientation == "RAS"
    assert model.title == "MONAI bundle liver_ct"  # the algorithm name the SEG records


def test_predictor_probabilities_equal_monai_running_the_bundle(
    bundle: Path, ct_files: tuple[Path, Path]
) -> None:
    image_path, _ = ct_files
    parser = ConfigParser()
    parser.read_config(bundle / "configs" / "inference.json")
    data = parser.get_parsed_content("preprocessing")({"image": str(image_path)})
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    with torch.no_grad():
        logits = parser.get_parsed_content("inferer")(data["image"][None], network.eval())
    expected = torch.softmax(torch.as_tensor(logits), dim=1)[0].numpy()

    model = load_bundle(bundle)
    image = model.oriented(read_nifti(image_path))
    probabilities = Predictor(model, device="cpu", overlap=0.5).predict_probabilities(image)
    assert probabilities.shape == expected.shape
    assert np.abs(probabilities - expected).max() < 1e-4
    assert np.allclose(image.affine, np.asarray(data["image"].affine), atol=1e-3)


def test_torchscript_and_yaml_bundles_predict_the_same(
    bundle: Path, weights: dict, ct_files: tuple[Path, Path], tmp_path: Path
) -> None:
    import yaml

    other = write_bundle(tmp_path / "ts", None, config_name="inference.yaml")
    (other / "configs" / "inference.json").unlink(missing_ok=True)
    (other / "configs" / "inference.yaml").write_text(yaml.safe_dump(inference_config()))
    network = UNet(**{k: v for k, v in NETWORK_DEF.items() if k != "_target_"})
    network.load_state_dict(weights)
    torch.jit.save(torch.jit.script(network.eval()), other / "models" / "model.ts")
    image = read_nifti(ct_files[0])
    a, b = load_bundle(bundle), load_bundle(other)
    assert b.meta["weights"] == "model.ts" and b.plan == a.plan.model_copy(
        update={"preset": b.plan.preset}
    )
    pa = Predictor(a, device="cpu").predict_probabilities(a.oriented(image))
    pb = Predictor(b, device="cpu").predict_probabilities(b.oriented(image))
    assert np.abs(pa - pb).max() < 1e-5


def test_wrapped_and_ddp_state_dicts_load(weights: dict, tmp_path: Path) -> None:
    ddp = {f"module.{k}": v for k, v in weights.items()}
    model = load_bundle(write_bundle(tmp_path / "b", {"model": ddp}))
    for key, value in model.network.state_dict().items():
        assert torch.equal(value, weights[key])


def _bad_cases() -> dict[str, tuple[dict, str, str]]:
    """Case name -> (write_bundle arguments, file the error names, words in the message)."""
    smaller = UNet(3, 1, 2, (4, 8, 16), (2, 2), num_res_units=1).state_dict()
    download = "$monai.bundle.load(name='spleen_ct_segmentation', bundle_dir='.')"
    url_net = dict(NETWORK_DEF, kernel_size="@kernel")
    steps = inference_config()["preprocessing"]["transforms"]
    return {
        "missing weights": ({"weights": None}, "models/model.pt", "no weights"),
        "download": (
            {"config": inference_config(network_def=download)},
            "inference.json",
            "download",
        ),
        "url by reference": (
            {"config": inference_config(network_def=url_net, kernel="https://x.org/k.json")},
            "inference.json",
            "download",
        ),
        "pretrained": (
            {"config": inference_config(network_def=dict(NETWORK_DEF, pretrained=True))},
            "inference.json",
            "pretrained",
        ),
        "unknown component": (
            {"config": inference_config(network_def=dict(NETWORK_DEF, _target_="scripts.net.Net"))},
            "inference.json",
            "unknown component",
        ),
        "state dict mismatch": ({"weights": smaller}, "models/model.pt", "do not match"),
        "labels vs channels": (
            {"meta": metadata({"0": "background", "1": "spleen", "2": "liver"})},
            "metadata.json",
            "predicts 2 channels",
        ),
        "unsupported step": (
            {
                "config": inference_config(
                    preprocessing={
                        "_target_": "Compose",
                        "transforms": [
                            *steps[:4],
                            {"_target_": "ScaleIntensityd", "keys": "image"},
                        ],
                    }
                )
            },
            "inference.json",
            "ScaleIntensityd",
        ),
        "no modality": ({"meta": metadata(modality="")}, "metadata.json", "modality"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing weights",
        "download",
        "url by reference",
        "pretrained",
        "unknown component",
        "state dict mismatch",
        "labels vs channels",
        "unsupported step",
        "no modality",
    ],
)
def test_bad_bundles_get_an_error_naming_the_file(case: str, weights: dict, tmp_path: Path) -> None:
    kwargs, names, words = _bad_cases()[case]
    arguments = {"weights": weights, **kwargs}
    root = write_bundle(tmp_path / "b", arguments.pop("weights"), **arguments)
    with pytest.raises(ModelError) as caught:
        load_bundle(root)
    assert str(caught.value.path).endswith(names)
    assert words in caught.value.problem


def test_missing_config_and_metadata(weights: dict, tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", weights)
    (root / "configs" / "metadata.json").unlink()
    with pytest.raises(ModelError, match=r"configs/metadata.json: bundle has no metadata"):
        load_bundle(root)
    (root / "configs" / "inference.json").unlink()
    with pytest.raises(ModelError, match=r"configs/inference.json: bundle has no inference"):
        load_bundle(root)


def test_cli_refuses_model_and_bundle_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["segment", str(CT_SERIES), "--model", "m.pt", "--bundle", "b", "--out", "o"])
    assert caught.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert main(["segment", str(CT_SERIES), "--bundle", str(missing), "--out", "o"]) == 2
    assert f"{missing}: bundle folder not found" in capsys.readouterr().err


def test_a_second_lazy_load_reads_the_cached_description(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan MONAI parsed once is reused for the same bytes; the network waits until asked."""
    monkeypatch.setenv("HOME", str(tmp_path))  # the description cache is under ~/.cache
    full = load_bundle(bundle)
    first = load_bundle(bundle, lazy=True)  # parses the config and caches what it found
    assert first.network_built and len(list(description_cache_dir().glob("*.json"))) == 1
    second = load_bundle(bundle, lazy=True)
    assert isinstance(second, BundleModel) and not second.network_built
    assert (second.plan, second.labels, second.orientation) == (
        full.plan,
        full.labels,
        full.orientation,
    )
    assert second.preset == full.preset and second.meta == full.meta
    assert second.weights_digest() == weights_digest(full.network)
    assert not second.network_built
    x = torch.rand(1, 1, *ROI)
    with torch.no_grad():
        assert torch.equal(second.network(x), full.network(x))


def test_new_weights_or_a_broken_description_are_parsed_again(
    bundle: Path, weights: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_bundle(bundle, lazy=True)
    (cached,) = description_cache_dir().glob("*.json")
    changed = {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}
    other = write_bundle(tmp_path / "retrained", changed)
    retrained = load_bundle(other, lazy=True)  # other bytes: no description yet
    assert retrained.network_built
    assert retrained.weights_digest() != load_bundle(bundle, lazy=True).weights_digest()
    cached.write_text(cached.read_text()[:40])  # a truncated description is ignored
    again = load_bundle(bundle, lazy=True)
    assert again.network_built and again.plan == load_bundle(bundle).plan


NO_MONAI = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "monai":
            raise ModuleNotFoundError("MONAI imported: " + name)
sys.meta_path.insert(0, Refuse())
from medverse.cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_segment_starts_without_monai_once_the_bundle_is_exported(
    bundle: Path, tmp_path: Path
) -> None:
    """The second run of a bundle takes its plan and network from the caches: no MONAI import.

    Importing MONAI is about 3 s of a `segment` run's start-up on a 2-core CPU.
    """
    pytest.importorskip("openvino")  # the CPU network; torch would build it with MONAI
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    argv = ["segment", str(CT_SERIES), "--bundle", str(bundle), "--device", "cpu"]
    first = subprocess.run(
        [sys.executable, "-m", "medverse", *argv, "--out", str(tmp_path / "a")],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = subprocess.run(
        [sys.executable, "-c", NO_MONAI, *argv, "--out", str(tmp_path / "b")],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["model"]["backend"] == "openvino"
    a = read_nifti_labels(tmp_path / "a" / "labels.nii.gz").array
    b = read_nifti_labels(tmp_path / "b" / "labels.nii.gz").array
    assert np.array_equal(a, b) and (b == 1).sum() > 1000
    if not cpu_has_bf16():
        return
    bf16 = subprocess.run(  # native bf16 runs in OpenVINO too: still no MONAI
        [sys.executable, "-c", NO_MONAI, *argv, "--precision", "bf16", "--out", f"{tmp_path}/c"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert bf16.returncode == 0, bf16.stderr
    assert "bf16" in json.loads((tmp_path / "c" / "report.json").read_text())["model"]["network"]
    c = read_nifti_labels(tmp_path / "c" / "labels.nii.gz").array
    assert (c == a).mean() > 0.995
