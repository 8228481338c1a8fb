"""The training log: one row per epoch as CSV and JSON, TensorBoard when installed, and a PNG of the curves.

Rows hold the training loss, validation OA/mF1/mIoU, per-class IoU, the
learning rate and the epoch's duration. Files are rewritten whole (and
atomically) after every epoch, so an interrupted run leaves a readable log,
and a resumed run continues it (rows after the resumed epoch are dropped).

Files in the log folder: ``history.csv``, ``history.json``, ``curves.png``
(needs matplotlib) and TensorBoard event files (needs tensorboard).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from mobanet.fileutil import atomic_output

SCALARS = ("loss", "train_oa", "overall_accuracy", "mf1", "miou", "miou_all", "lr", "seconds")


def _open_tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(folder / "tensorboard"))


class TrainingLog:
    """Per-epoch rows in ``folder``; `close` when training ends."""

    def __init__(self, folder: Path, class_names: list[str]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.class_names = class_names
        self.rows: list[dict[str, Any]] = []
        self.tensorboard = _open_tensorboard(self.folder)

    @property
    def csv_path(self) -> Path:
        return self.folder / "history.csv"

    @property
    def json_path(self) -> Path:
        return self.folder / "history.json"

    @property
    def plot_path(self) -> Path:
        return self.folder / "curves.png"

    def resume(self, epochs_done: int) -> None:
        """Continue the log of an interrupted run: keep its rows up to ``epochs_done``."""
        if self.json_path.is_file():
            rows = json.loads(self.json_path.read_text())
            self.rows = [r for r in rows if r.get("epoch", 0) <= epochs_done]

    def append(self, row: dict[str, Any]) -> None:
        """Add one epoch (``epoch``, the SCALARS, ``per_class_iou`` {name: iou}) and rewrite the files."""
        self.rows.append(row)
        self._write_json()
        self._write_csv()
        self._write_plot()
        if self.tensorboard is not None:
            for key in SCALARS:
                if isinstance(row.get(key), float) and math.isfinite(row[key]):
                    self.tensorboard.add_scalar(key, row[key], row["epoch"])
            for name, value in (row.get("per_class_iou") or {}).items():
                if value is not None:
                    self.tensorboard.add_scalar(f"iou/{name}", value, row["epoch"])
            self.tensorboard.flush()

    def _write_json(self) -> None:
        with atomic_output(self.json_path) as tmp:
            tmp.write_text(json.dumps(self.rows, indent=1))

    def _write_csv(self) -> None:
        columns = ["epoch", *SCALARS, *(f"iou_{n}" for n in self.class_names)]
        with atomic_output(self.csv_path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in self.rows:
                per_class = row.get("per_class_iou") or {}
                values = [row.get(c) for c in columns[:1 + len(SCALARS)]]
                values += [per_class.get(n) for n in self.class_names]
                writer.writerow(["" if v is None else v for v in values])

    def _write_plot(self) -> None:
        """Loss and validation scores against epochs; skipped without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt
        except ImportError:
            return
        epochs = [r["epoch"] for r in self.rows]
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.plot(epochs, [r.get("loss") for r in self.rows], marker="o", label="training loss")
        left.set_xlabel("epoch")
        left.set_ylabel("loss")
        left.legend()
        for key, label in (("miou", "mIoU"), ("mf1", "mF1"), ("overall_accuracy", "OA"), ("train_oa", "train OA")):
            values = [r.get(key) for r in self.rows]
            if any(v is not None for v in values):
                right.plot(epochs, [math.nan if v is None else v for v in values], marker="o", label=label)
        right.set_xlabel("epoch")
        right.set_ylabel("score")
        right.set_ylim(0, 1)
        right.legend()
        figure.tight_layout()
        with atomic_output(self.plot_path) as tmp:
            figure.savefig(tmp, dpi=80)
        plt.close(figure)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
