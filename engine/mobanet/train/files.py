"""The files of a training run: the names derived from ``--output`` and the check of every path.

A run writes its best model to ``--output``, the last epoch's model to
``<stem>.last.safetensors``, the resume state to ``<stem>.state.safetensors``
and its log to ``<stem>_logs/`` (or ``--log-dir``); each epoch's files are
committed together through one `mobanet.fileutil.OutputSet`. Before any work
`check_run_paths` makes sure no argument names another's file or one of these
derived files. ``--resume`` may name this run's own state: resuming continues
the files it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobanet.errors import InputError
from mobanet.pathcheck import FOLDER, OUTPUT, PathArgument, check_paths
from mobanet.wording import option

MODEL_SUFFIX = ".safetensors"
LOG_FILES = ("history.csv", "history.json", "curves.png")
VALIDATION_PAIRS = (("--optical", "--val-optical"), ("--dsm", "--val-dsm"), ("--labels", "--val-labels"))


@dataclass
class RunPaths:
    """The files a run writes, all derived from ``output``."""

    best: Path
    last: Path
    state: Path
    log_dir: Path

    @classmethod
    def for_output(cls, output: Path, log_dir: Path | None) -> RunPaths:
        output = Path(output)
        stem = output.name.removesuffix(MODEL_SUFFIX)
        return cls(output, output.with_name(f"{stem}.last{MODEL_SUFFIX}"),
                   output.with_name(f"{stem}.state{MODEL_SUFFIX}"),
                   Path(log_dir) if log_dir else output.with_name(f"{stem}_logs"))


def resume_paths(path: Path) -> tuple[Path, Path]:
    """(state file, last model) of an interrupted run, from its state file or any of its model files."""
    name = Path(path).name
    for suffix in (f".state{MODEL_SUFFIX}", f".last{MODEL_SUFFIX}", MODEL_SUFFIX):
        if name.endswith(suffix):
            stem = name.removesuffix(suffix)
            break
    else:
        stem = name
    return (Path(path).with_name(f"{stem}.state{MODEL_SUFFIX}"), Path(path).with_name(f"{stem}.last{MODEL_SUFFIX}"))


def run_path_arguments(options: Any) -> list[PathArgument]:
    """Every path a run with these `TrainOptions` reads or writes."""
    paths = RunPaths.for_output(Path(options.output), options.log_dir)
    arguments = [PathArgument(f"--{prefix}{kind}", getattr(scene, kind))
                 for prefix, scenes in (("", options.scenes), ("val-", options.validation))
                 for scene in scenes for kind in ("optical", "dsm", "labels")]
    arguments += [PathArgument("--weights", options.weights), PathArgument("--init", options.init)]
    if options.resume is not None:
        own = {paths.state.resolve(), paths.last.resolve()}
        arguments += [PathArgument("--resume", path) for path in resume_paths(Path(options.resume))
                      if path.resolve() not in own]  # continuing this run's own files is the point of resuming
    log_option = "--log-dir" if options.log_dir else "--output"
    arguments += [
        PathArgument("--output", paths.best, OUTPUT, suffixes=(MODEL_SUFFIX,), format="a safetensors model file"),
        PathArgument("--output", paths.last, OUTPUT, derived="last-epoch model"),
        PathArgument("--output", paths.state, OUTPUT, derived="resume state"),
        PathArgument(log_option, paths.log_dir, FOLDER, derived=None if options.log_dir else "log folder"),
        *(PathArgument(log_option, paths.log_dir / name, OUTPUT, derived=f"log file {name}", new_folder=True)
          for name in LOG_FILES),
    ]
    return arguments


def check_run_paths(options: Any) -> None:
    """Refuse clashing or unwritable paths of a run (see module docstring), before any work."""
    if options.resume is not None and Path(options.resume).is_dir():
        raise InputError(f"{option('--resume')} {options.resume} is a folder; give the .state.safetensors file that "
                         "an interrupted run left beside its output.")
    check_paths(run_path_arguments(options), may_share=VALIDATION_PAIRS)
