"""One progress count for a whole training run: every optimiser step and every validated window.

A bar that restarts each epoch, or that stops at 100 % while the last
validation still runs, tells an analyst nothing about when the run ends. Here
the whole run is planned up front in window units: a training step counts
``STEP_COST`` units per window it trains on (forward and backward), a
validation counts one unit per window of its tiled inference. The count
moves with every step and every validated batch and reaches its total only
when the last epoch is validated and saved. On ranks other than 0 (torchrun) it is
silent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mobanet.progress import Progress, Task
from mobanet.raster.tiling import DEFAULT_PLAN

if TYPE_CHECKING:
    from mobanet.train.trainer import TrainOptions

STEP_COST = 3  # a training window (forward + backward) costs about three inference windows


def validation_due(epoch: int, validate_every: int, epochs: int) -> bool:
    """Whether the run validates after ``epoch`` (1-based): every ``validate_every`` epochs and after the last."""
    return epoch % validate_every == 0 or epoch == epochs


def validation_windows(scenes: list[Any], window: int) -> int:
    """Windows one validation predicts over ``scenes`` (objects with a ``scene``: a `mobanet.raster.Scene`)."""
    return sum(len(DEFAULT_PLAN.grid(item.scene.width, item.scene.height, window, anchor=item.scene.anchor))
               for item in scenes)  # `predict_array` validates with the default plan


class TrainingProgress:
    """The run's progress (see module docstring); ``progress=None`` makes every call a no-op."""

    def __init__(self, progress: Progress | None, epochs: int, iterations: int, windows_per_step: int,
                 validation_windows: int, validate_every: int, start_epoch: int = 0):
        self.progress = progress
        self.epochs = epochs
        self.step_units = STEP_COST * windows_per_step
        self.validate_every = validate_every
        self.epoch_units = [iterations * self.step_units
                            + (validation_windows if validation_due(e, validate_every, epochs) else 0)
                            for e in range(1, epochs + 1)]
        self.task: Task | None = None
        self._epoch_end = sum(self.epoch_units[:start_epoch])
        if progress is not None:
            self.task = progress.task(sum(self.epoch_units), f"Epoch {start_epoch + 1}/{epochs}", unit="window")
            if self._epoch_end:
                self.task.update(self._epoch_end)

    @classmethod
    def for_run(cls, progress: Progress | None, options: TrainOptions, validation_windows: int,
                start_epoch: int) -> TrainingProgress:
        """The count of a run with these options, ``start_epoch`` epochs already done (resume)."""
        return cls(progress, options.epochs, options.iterations, options.batch_size * options.accumulate,
                   validation_windows, options.validate_every, start_epoch)

    def validates(self, epoch: int) -> bool:
        """Whether the run validates after ``epoch``: the trainer asks here, so the plan is what runs."""
        return validation_due(epoch, self.validate_every, self.epochs)

    def start_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (1-based) begins: the previous one counts as complete, the message names the new one."""
        self._settle()
        self._epoch_end += self.epoch_units[epoch - 1]
        if self.task is not None:
            self.task.set_description(f"Epoch {epoch}/{self.epochs}")

    def step(self, loss: float, lr: float) -> None:
        """One optimiser step is done."""
        if self.task is not None:
            self.task.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            self.task.update(max(0, min(self.step_units, self._epoch_end - 1 - self.task.done)))

    def validation(self, epoch: int) -> Progress | None:
        """A `Progress` for the tiled inference that validates ``epoch``: its windows advance this count."""
        if self.task is None:
            return None
        self.task.set_description(f"Validating epoch {epoch}/{self.epochs}")
        # one unit stays for writing the epoch's files: 100 % comes only with `close`
        return _PartOfTask(self.progress, self.task, self._epoch_end - 1)

    def _settle(self) -> None:
        """Stand exactly at the planned end of the epoch just done (its validation may have skipped windows)."""
        if self.task is not None and self.task.done < self._epoch_end:
            self.task.update(self._epoch_end - self.task.done)

    def finish(self) -> None:
        """The run ended normally: the last epoch counts as complete (100 % unless it stopped early)."""
        if self.task is not None:
            self.task.set_description("Training finished")
        self._settle()
        self.close()

    def close(self) -> None:
        """Close the bar where it stands (also after an error, before the error is printed)."""
        if self.task is not None:
            self.task.close()
            self.task = None


class _PartOfTask(Progress):
    """A `Progress` whose tasks advance a task of the run instead of starting bars of their own."""

    def __init__(self, progress: Progress, task: Task, limit: int):
        super().__init__(progress.mode, progress.stream, progress.min_interval)
        self.parent_task = task
        self.limit = limit

    def task(self, total: int, desc: str, unit: str = "it") -> _Share:
        return _Share(self.parent_task, self.limit)


class _Share:
    """The part of a run's task that one nested stage (a validation) fills, never past ``limit``.

    Closing it leaves the run's task open.
    """

    def __init__(self, task: Task, limit: int):
        self.task = task
        self.limit = limit

    def update(self, n: int = 1) -> None:
        n = min(n, self.limit - self.task.done)
        if n > 0:
            self.task.update(n)

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Share:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
