"""What one training run is: its scenes and its options (the CLI's and QGIS's defaults).

`check_options` refuses impossible settings and clashing paths before anything
loads, each with the option to change; the files a run writes are in
`mobanet.train.files`, the run itself in `mobanet.train.trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mobanet.errors import InputError
from mobanet.model.masking import MODES
from mobanet.model.profiles import PROFILES
from mobanet.raster.predict import max_window
from mobanet.train.files import check_run_paths
from mobanet.wording import option, option_list

MCRM_MODES = (*MODES, "none")
FEATURE_PYRAMID = True  # for our profile, chosen by the ablation (benchmarks/results/ablation.md)


@dataclass
class SceneFiles:
    """One labelled scene: co-registered optical raster and DSM, and labels (raster or polygons)."""

    optical: Path
    dsm: Path
    labels: Path
    class_field: str | None = None  # attribute holding the class of vector labels


@dataclass
class TrainOptions:
    """Everything one training run needs; defaults follow the authors' recipe (SPEC section 2)."""

    scenes: list[SceneFiles]
    output: Path
    validation: list[SceneFiles] = field(default_factory=list)
    holdout: float = 0.2  # without validation scenes: this share of each scene (a right-hand strip) validates
    # network
    backbone: str = "tiny"
    weights: Path | None = None
    pretrained: bool = False
    profile: str = "mobanet"  # or "reference": the authors' released layout (mobanet.model.profiles)
    cpia: str | None = None  # None: the profile's form
    fusion: str = "gated"
    streams: str = "dual"
    finetune_backbone: bool = False
    feature_pyramid: bool | None = None  # None: the profile's (`feature_pyramid_for`: on for ours, the ablation)
    init: Path | None = None  # start from this model file (its configuration and classes win)
    # MCRM and loss
    mcrm: str = "mix"  # the ablation's choice (benchmarks/results/ablation.md); the authors' code: local, 0.25
    mcrm_ratio: float = 0.5
    aux_heads: bool = True  # hard-pixel auxiliary heads and their loss (dual streams)
    aux_weight: float = 0.01
    # schedule
    epochs: int = 50
    iterations: int = 1000
    batch_size: int = 24  # per process under torchrun
    accumulate: int = 1
    window: int | None = None  # training = validation = inference window; None: the card's (ModelCard.window)
    lr: float = 2e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    min_lr: float = 1e-6
    # sampling
    min_labelled: float = 0.5
    class_balanced: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    # run control and outputs
    resume: Path | None = None  # a <stem>.state.safetensors (or the output model beside it)
    early_stopping: int | None = None  # stop after this many validations without a better mIoU
    full_checkpoint: bool = False
    log_dir: Path | None = None
    validate_every: int = 1
    # model card overrides
    class_names: list[str] | None = None
    class_colors: list[tuple[int, int, int]] | None = None
    bands: list[int] | None = None
    gsd: float | None = None
    command: str | None = None  # the command line, recorded in the model card


def feature_pyramid_for(options: TrainOptions) -> bool:
    """Whether a new network gets the simple feature pyramid: as asked, else as its profile has it."""
    if options.feature_pyramid is not None:
        return options.feature_pyramid
    return bool(PROFILES[options.profile].fixed.get("feature_pyramid", FEATURE_PYRAMID))


def check_options(options: TrainOptions) -> None:
    """Refuse impossible settings and clashing paths up front, each with the option to change."""
    if not options.scenes:
        raise InputError(f"No training scene given; give {option_list('--optical', '--dsm', '--labels')} "
                         "(once per scene).")
    numbers = {"--epochs": options.epochs, "--iterations": options.iterations, "--batch-size": options.batch_size,
               "--accumulate": options.accumulate, "--validate-every": options.validate_every}
    for name, value in numbers.items():
        if value < 1:
            raise InputError(f"{option(name)} must be at least 1, got {value}.")
    if options.window is not None and not 28 <= options.window <= max_window(14):
        raise InputError(f"{option('--window')} {options.window} is out of range; use 28 to {max_window(14)} px "
                         "(266 is the default).")
    if not 0.0 <= options.holdout < 0.9:
        raise InputError(f"{option('--holdout')} {options.holdout} must be in [0, 0.9); 0.2 holds out a fifth of "
                         "each scene.")
    if options.mcrm not in MCRM_MODES:
        raise InputError(f"{option('--mcrm')} {options.mcrm!r} is not one of {', '.join(MCRM_MODES)}.")
    for name, value in (("--mcrm-ratio", options.mcrm_ratio), ("--min-labelled", options.min_labelled)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{option(name)} must be between 0 and 1, got {value}.")
    if options.lr <= 0 or options.min_lr < 0 or options.min_lr > options.lr:
        raise InputError(f"Learning rates must satisfy 0 <= {option('--min-lr')} <= {option('--lr')} and "
                         f"{option('--lr')} > 0 (got {options.lr} and {options.min_lr}).")
    if options.early_stopping is not None and options.early_stopping < 1:
        raise InputError(f"{option('--early-stopping')} must be at least 1 validation, got {options.early_stopping}.")
    if options.class_colors is not None and options.class_names is not None and \
            len(options.class_colors) != len(options.class_names):
        raise InputError(f"{len(options.class_names)} class names but {len(options.class_colors)} class colours; "
                         "give one colour per class.")
    check_run_paths(options)
