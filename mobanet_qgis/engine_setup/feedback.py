"""How a set-up reports to its caller, and how it fails.

The set-up code talks to a QgsProcessingFeedback, but only through the few
methods listed in `SetupFeedback`, so that it can run (and be tested) with any
object that has them.
"""

from __future__ import annotations

from typing import Protocol


class SetupFeedback(Protocol):
    """The part of QgsProcessingFeedback that a set-up uses."""

    def pushInfo(self, info: str) -> None: ...

    def pushWarning(self, warning: str) -> None: ...

    def pushConsoleInfo(self, info: str) -> None: ...

    def pushCommandInfo(self, info: str) -> None: ...

    def pushDebugInfo(self, info: str) -> None: ...

    def setProgress(self, progress: float) -> None: ...

    def setProgressText(self, text: str) -> None: ...

    def isCanceled(self) -> bool: ...


class SetupError(Exception):
    """A set-up failed for a reason the user can act on; the message is one sentence that says how."""


class SetupCancelled(SetupError):
    """The user cancelled; the previous environment is left as it was."""


class ProgressBand:
    """Maps a step's own progress (0..1) onto its band of the overall progress bar (percent)."""

    def __init__(self, feedback: SetupFeedback, start: float, end: float):
        self.feedback = feedback
        self.start = start
        self.end = end

    def set(self, fraction: float) -> None:
        fraction = max(0.0, min(1.0, fraction))
        self.feedback.setProgress(self.start + (self.end - self.start) * fraction)
