"""Everything decided before the first step: validated data, plan, split, fresh run or resume.

Nothing here writes: a bad dataset or a bad option fails before the run folder is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from medverse.core.errors import ConfigError, InputError
from medverse.core.logging import get_logger
from medverse.parallel.ddp import select_device
from medverse.preprocessing.fingerprint import compute_fingerprint, first_error
from medverse.preprocessing.msd import MsdDataset, load_msd_dataset
from medverse.preprocessing.plan import Plan, make_plan
from medverse.training.checkpointing import RESUME_FILE
from medverse.training.config import TrainConfig
from medverse.training.precision import make_precision
from medverse.training.split import SPLIT_FILE, Split, load_split, make_split

_log = get_logger(__name__)

CONFIG_FILE = "config.json"
PLAN_FILE = "plan.json"
DEFAULT_PRESET = "dynunet"

# Options a resumed run takes from the new call; all others come from the run's config.json.
RUNTIME_FIELDS = frozenset(
    {
        "epochs",
        "val_every",
        "time_limit_min",
        "device",
        "amp",
        "cpu_bf16",
        "processes",
        "num_workers",
        "cache",
        "deterministic",
        "progress",
        "resume",
    }
)


@dataclass(frozen=True)
class RunSetup:
    """A run, fully decided.

    Attributes:
        dataset_dir: The MSD dataset folder.
        run_dir: The run folder.
        config: Effective options (the stored ones plus runtime ones when resumed).
        plan: Preprocessing plan.
        split: Train/validation split.
        resumed: True when continuing an earlier run.
    """

    dataset_dir: Path
    run_dir: Path
    config: TrainConfig
    plan: Plan
    split: Split
    resumed: bool


def prepare_run(
    dataset_dir: str | Path, out_dir: str | Path, config: TrainConfig
) -> tuple[RunSetup, MsdDataset]:
    """Validate the dataset and the run folder; decide plan and split (nothing is written).

    Raises:
        InputError: Naming the case, for a missing file, an unknown label value or an image
            and label of different shapes; or a run folder that cannot be resumed.
        ConfigError: For a run folder that already holds a run (without ``resume``) or
            options that do not fit the data.
    """
    run_dir = Path(out_dir)
    _check_device(config)
    _check_run_dir(run_dir, config.resume)
    if config.resume:
        config = _resumed_config(run_dir, config)
    dataset = load_msd_dataset(dataset_dir)
    plan = _choose_plan(dataset, run_dir, config)
    names = [case.name for case in dataset.cases]
    if config.resume:
        split = load_split(run_dir / SPLIT_FILE)
        missing = sorted(set(split.train + split.validation) - set(names))
        if missing:
            raise InputError(f"the run's split names cases not in the dataset: {missing[:5]}")
    else:
        split = make_split(names, seed=config.seed, fold=config.fold, n_folds=config.n_folds)
    setup = RunSetup(Path(dataset_dir), run_dir, config, plan, split, config.resume)
    return setup, dataset


def _check_device(config: TrainConfig) -> None:
    device = select_device(config.device)
    if device.type == "cpu" and config.cpu_bf16:
        make_precision(device, cpu_bf16=True)  # ConfigError on a CPU without native bf16
    if device.type == "cuda" and config.processes > torch.cuda.device_count():
        raise ConfigError(
            f"{config.processes} GPU processes asked for, {torch.cuda.device_count()} GPUs present"
        )


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    has_state = (run_dir / RESUME_FILE).is_file()
    if resume and not has_state:
        raise InputError("nothing to resume here (no resume_state.pt)", run_dir)
    if not resume and (has_state or (run_dir / CONFIG_FILE).is_file()):
        raise ConfigError(
            "already holds a training run; pass --resume to continue it or choose another --out",
            run_dir,
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("the output path exists and is not a folder", run_dir)


def _resumed_config(run_dir: Path, given: TrainConfig) -> TrainConfig:
    path = run_dir / CONFIG_FILE
    try:
        stored = TrainConfig.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise InputError("cannot resume: config.json is missing", path) from None
    except ValidationError as error:
        raise ConfigError(f"not a valid training config ({first_error(error)})", path) from None
    defaults = TrainConfig()
    for name in sorted(set(TrainConfig.model_fields) - RUNTIME_FIELDS):
        value = getattr(given, name)
        if value != getattr(stored, name) and value != getattr(defaults, name):
            _log.warning(
                "resume: ignoring %s=%s; the run uses %s", name, value, getattr(stored, name)
            )
    update: dict[str, Any] = {name: getattr(given, name) for name in RUNTIME_FIELDS}
    return stored.model_copy(update=update)


def _choose_plan(dataset: MsdDataset, run_dir: Path, config: TrainConfig) -> Plan:
    if config.resume:
        return Plan.load(run_dir / PLAN_FILE)
    if config.init_weights is not None:
        return _plan_of_weights(dataset, config)
    if config.plan_path is not None:
        if config.preset is not None or config.patch_size is not None:
            raise ConfigError("give either a plan file or --preset/--patch-size, not both")
        plan = Plan.load(config.plan_path)
        if {int(k): v for k, v in plan.labels.items()} != dataset.labels:
            raise ConfigError(
                f"plan labels {plan.labels} differ from dataset labels {dataset.labels}",
                config.plan_path,
            )
        return plan
    pairs = ((case.image, case.label) for case in dataset.cases)
    fingerprint = compute_fingerprint(pairs, dataset.modality, labels=dataset.labels)
    overrides = {"patch_size": list(config.patch_size)} if config.patch_size else None
    return make_plan(fingerprint, preset=config.preset or DEFAULT_PRESET, overrides=overrides)


def _plan_of_weights(dataset: MsdDataset, config: TrainConfig) -> Plan:
    """The plan of the checkpoint a fine-tuning run starts from (its weights are checked too)."""
    from medverse.models.checkpoint import load_checkpoint

    path = Path(str(config.init_weights))
    if config.plan_path is not None or config.preset is not None:
        raise ConfigError("--init-weights brings its own plan and preset; drop --plan/--preset")
    loaded = load_checkpoint(path)  # ModelError naming the file when it is not usable
    plan = loaded.plan
    if {int(k): v for k, v in plan.labels.items()} != dataset.labels:
        raise ConfigError(
            f"the checkpoint's labels {plan.labels} differ from the dataset's {dataset.labels}",
            path,
        )
    if config.patch_size is None:
        return plan
    try:
        return Plan.model_validate({**plan.model_dump(), "patch_size": config.patch_size})
    except ValidationError as error:
        raise ConfigError(f"--patch-size does not fit ({first_error(error)})") from None
