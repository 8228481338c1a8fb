"""The training log: one row per epoch as CSV and JSON, TensorBoard when installed, and a PNG of the curves.

Rows hold the training loss, validation OA/mF1/mIoU, per-class IoU, the
learning rate and the epoch's duration. Files are rewritten whole after every
epoch, committed with that epoch's models (one `OutputSet`), so an
interrupted run leaves a readable log that matches its resume state, and a
resumed run continues it (rows after the resumed epoch are dropped). The
folder appears with the first committed epoch, never empty.

Files in the log folder: ``history.csv``, ``history.json``, ``curves.png``
(needs matplotlib) and TensorBoard event files (needs tensorboard).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from mobanet.fileutil import OutputSet

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
        self.class_names = class_names
        self.rows: list[dict[str, Any]] = []
        self.tensorboard = None  # opened after the first commit, when the folder exists

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

    def append(self, row: dict[str, Any], outputs: OutputSet) -> None:
        """Add one epoch (``epoch``, the SCALARS, ``per_class_iou`` {name: iou}); the files join ``outputs``."""
        self.rows.append(row)
        outputs.write_text(self.json_path, json.dumps(self.rows, indent=1))
        outputs.write_text(self.csv_path, self._csv())
        plot = self._plot()
        if plot is not None:
            outputs.write_bytes(self.plot_path, plot)
        outputs.after_commit(lambda: self._add_events(row))

    def _add_events(self, row: dict[str, Any]) -> None:
        """TensorBoard events (append-only files) for a committed epoch, when tensorboard is installed."""
        if self.tensorboard is None:
            self.tensorboard = _open_tensorboard(self.folder)
        if self.tensorboard is not None:
            for key in SCALARS:
                if isinstance(row.get(key), float) and math.isfinite(row[key]):
                    self.tensorboard.add_scalar(key, row[key], row["epoch"])
            for name, value in (row.get("per_class_iou") or {}).items():
                if value is not None:
                    self.tensorboard.add_scalar(f"iou/{name}", value, row["epoch"])
            self.tensorboard.flush()

    def _csv(self) -> str:
        columns = ["epoch", *SCALARS, *(f"iou_{n}" for n in self.class_names)]
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(columns)
        for row in self.rows:
            per_class = row.get("per_class_iou") or {}
            values = [row.get(c) for c in columns[:1 + len(SCALARS)]]
            values += [per_class.get(n) for n in self.class_names]
            writer.writerow(["" if v is None else v for v in values])
        return text.getvalue()

    def _plot(self) -> bytes | None:
        """Loss and validation scores against epochs as PNG bytes; None without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt
        except ImportError:
            return None
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
        image = io.BytesIO()
        figure.savefig(image, format="png", dpi=80)
        plt.close(figure)
        return image.getvalue()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
