"""One progress count for a training run: it moves with every step and validated window, 100 % only at the end."""

import io
import json

from mobanet.progress import Progress
from mobanet.train.run_progress import STEP_COST, TrainingProgress


def _events(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _run(progress_run, epochs, iterations, validation_windows, windows_reported):
    """Drive a run the way `Trainer.run` does; the validation reports ``windows_reported`` windows."""
    for epoch in range(1, epochs + 1):
        progress_run.start_epoch(epoch)
        for _ in range(iterations):
            progress_run.step(1.0, 1e-4)
        if progress_run.validates(epoch):
            with progress_run.validation(epoch).task(validation_windows, "Segmenting", unit="window") as task:
                for _ in range(windows_reported):
                    task.update(1)
    progress_run.finish()


def test_count_covers_steps_and_validation_and_ends_at_one():
    stream = io.StringIO()
    run = TrainingProgress(Progress("json", stream=stream, min_interval=0.0), epochs=3, iterations=2,
                           windows_per_step=2, validation_windows=5, validate_every=2)
    assert run.task.total == 3 * 2 * STEP_COST * 2 + 2 * 5  # epochs 2 and 3 validate
    _run(run, 3, 2, 5, windows_reported=5)
    events = [e for e in _events(stream) if e["event"] == "progress"]
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions), "progress went backwards"
    assert fractions[-1] == 1.0 and 1.0 not in fractions[:-1]
    assert len(set(fractions)) > 10
    validating = [e for e in events if e["message"].startswith("Validating epoch")]
    assert {e["message"] for e in validating} == {"Validating epoch 2/3", "Validating epoch 3/3"}
    assert all(e["fraction"] < 1.0 for e in validating)
    assert {e["message"] for e in events} >= {"Epoch 1/3", "Epoch 2/3", "Epoch 3/3"}


def test_more_work_than_planned_does_not_end_the_count_early():
    """A validation reporting more windows, or more steps, than planned: still 100 % only at the end."""
    stream = io.StringIO()
    run = TrainingProgress(Progress("json", stream=stream, min_interval=0.0), epochs=2, iterations=1,
                           windows_per_step=1, validation_windows=3, validate_every=1)
    _run(run, 2, 3, 3, windows_reported=9)
    fractions = [e["fraction"] for e in _events(stream) if e["event"] == "progress"]
    assert fractions[-1] == 1.0 and 1.0 not in fractions[:-1]


def test_a_resumed_run_starts_where_its_epochs_end():
    stream = io.StringIO()
    run = TrainingProgress(Progress("json", stream=stream, min_interval=0.0), epochs=4, iterations=1,
                           windows_per_step=1, validation_windows=0, validate_every=1, start_epoch=3)
    assert run.task.done == 3 * STEP_COST
    assert _events(stream)[0]["message"] == "Epoch 4/4"


def test_other_ranks_report_nothing():
    run = TrainingProgress(None, epochs=1, iterations=1, windows_per_step=1, validation_windows=1,
                           validate_every=1)
    run.start_epoch(1)
    run.step(1.0, 1e-4)
    assert run.validation(1) is None and run.validates(1)
    run.finish()


def test_closing_after_an_error_leaves_the_count_where_it_stands():
    stream = io.StringIO()
    run = TrainingProgress(Progress("json", stream=stream, min_interval=0.0), epochs=2, iterations=2,
                           windows_per_step=1, validation_windows=2, validate_every=1)
    run.start_epoch(1)
    run.step(1.0, 1e-4)
    run.close()  # what `Trainer.run` does when the epoch fails
    assert _events(stream)[-1]["fraction"] < 0.5 and run.task is None
