"""Run pip (and other set-up commands) as a child process: stream its output, show progress, stop on cancel.

Every line goes to the Processing log as it comes. pip >= 24.1 with
``--progress-bar raw`` also prints ``Progress <done> of <total>`` for each
download, which moves the progress bar; ``Collecting``/``Downloading`` and
``Installing collected packages`` lines move it between downloads. Cancel
terminates the child (then kills it after a grace period) and raises
SetupCancelled; the caller throws the half-built environment away.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobanet_qgis.engine_setup.feedback import ProgressBand, SetupCancelled, SetupError, SetupFeedback

POLL_INTERVAL_S = 0.1
TERMINATE_GRACE_S = 10.0
RAW_PROGRESS_PIP = (24, 1)  # first pip with --progress-bar raw
CANCELLED = "Set-up cancelled; the engine environment is as it was before (a partly built one is removed)."

_RAW_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
_NEW_PACKAGE = re.compile(r"^\s*(Collecting|Processing|Downloading|Using cached|Obtaining)\s+(\S+)")
_NETWORK_TROUBLE = ("Could not fetch URL", "Failed to establish a new connection", "ProxyError", "SSLError",
                    "CERTIFICATE_VERIFY_FAILED", "Max retries exceeded", "Read timed out", "Name or service not known",
                    "Temporary failure in name resolution", "407 Proxy Authentication Required")
# While pip resolves and downloads, the step's bar approaches this share; installing fills the rest.
DOWNLOAD_SHARE = 0.7


def _read_lines(stream: Any, sink: queue.Queue) -> None:
    try:
        for line in iter(stream.readline, ""):
            sink.put(line.rstrip("\r\n"))
    finally:
        sink.put(None)


def run_streamed(argv: list[str], env: dict[str, str], feedback: SetupFeedback,
                 on_line: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run `argv` to the end; each output line (stdout and stderr) goes to `on_line` (default: the log).

    Returns (exit code, output lines). Raises SetupCancelled when the user
    cancels; the child is stopped first.
    """
    handle = on_line or feedback.pushConsoleInfo
    feedback.pushCommandInfo(" ".join(f'"{a}"' if " " in a else a for a in argv))
    try:
        # Same process group as QGIS: a Ctrl-C on a terminal running qgis_process stops pip too.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=env, text=True, encoding="utf-8", errors="replace", bufsize=1)
    except OSError as exc:
        raise SetupError(f"Could not start {argv[0]}: {exc}.") from exc
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    output: list[str] = []
    try:
        while True:
            if feedback.isCanceled():
                _stop(process)
                raise SetupCancelled(CANCELLED)
            try:
                line = lines.get(timeout=POLL_INTERVAL_S)
            except queue.Empty:
                continue
            if line is None:
                break
            output.append(line)
            handle(line)
        returncode = process.wait()
        if feedback.isCanceled():  # e.g. Ctrl-C in a terminal reached the child too and it stopped by itself
            raise SetupCancelled(CANCELLED)
        return returncode, output
    except BaseException:
        _stop(process)
        raise
    finally:
        reader.join(timeout=1.0)
        if process.stdout is not None:
            process.stdout.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def pip_version(python: Path, env: dict[str, str]) -> tuple[int, ...]:
    """The version of pip in `python`'s environment, as numbers ((0,) when pip is missing)."""
    try:
        shown = subprocess.run([str(python), "-c", "import pip; print(pip.__version__)"], capture_output=True,
                               text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return (0,)
    numbers = re.findall(r"\d+", shown.stdout.strip().split("+")[0])[:3]
    return tuple(int(n) for n in numbers) if shown.returncode == 0 and numbers else (0,)


class PipFailed(SetupError):
    """pip ended with an error; `reason` is pip's own last word on it (for a shorter warning)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class PipProgress:
    """Turns pip's output into log lines, progress text and a moving bar."""

    def __init__(self, feedback: SetupFeedback, band: ProgressBand):
        self.feedback = feedback
        self.band = band
        self.packages = 0
        self.current = ""
        self.shown_percent = -1
        self.errors: list[str] = []
        self.network_trouble: list[str] = []

    def _download_fraction(self, file_fraction: float) -> float:
        seen = self.packages - 1 + file_fraction
        return DOWNLOAD_SHARE * seen / (seen + 3.0) if seen > 0 else 0.0

    def line(self, line: str) -> None:
        raw = _RAW_PROGRESS.match(line.strip())
        if raw:
            done, total = int(raw.group(1)), int(raw.group(2))
            fraction = done / total if total else 1.0
            self.band.set(self._download_fraction(fraction))
            percent = int(100 * fraction) // 10 * 10
            if percent != self.shown_percent:
                self.shown_percent = percent
                self.feedback.setProgressText(f"{self.current}: {percent} %")
            return
        self.feedback.pushConsoleInfo(line)
        stripped = line.strip()
        if stripped.startswith("ERROR:"):
            self.errors.append(stripped)
        if any(marker in line for marker in _NETWORK_TROUBLE):
            self.network_trouble.append(stripped)
        new_package = _NEW_PACKAGE.match(line)
        if new_package:
            if new_package.group(1) != "Downloading":  # "Downloading" follows the package's "Collecting"
                self.packages += 1
            self.current = stripped
            self.shown_percent = -1
            self.band.set(self._download_fraction(0.0))
        elif stripped.startswith("Installing collected packages:"):
            self.band.set(DOWNLOAD_SHARE + 0.1)
            names = stripped.split(":", 1)[1].strip()
            short = names if len(names) < 120 else names[:117] + "..."
            self.feedback.setProgressText(f"Installing {short}")
        elif stripped.startswith("Successfully installed"):
            self.band.set(1.0)


def pip_install(python: Path, arguments: list[str], env: dict[str, str], feedback: SetupFeedback,
                band: ProgressBand, what: str, raw_progress: bool) -> PipProgress:
    """``python -m pip install ARGUMENTS`` with progress; raises SetupError (pip's own error) when it fails."""
    progress = PipProgress(feedback, band)
    argv = [str(python), "-m", "pip", "install", "--progress-bar", "raw" if raw_progress else "off", *arguments]
    returncode, output = run_streamed(argv, env, feedback, progress.line)
    if returncode != 0:
        reason = progress.errors[-1] if progress.errors else next(
            (line.strip() for line in reversed(output) if line.strip()), "no output")
        raise PipFailed(failure_message(what, returncode, reason, progress, output), reason)
    band.set(1.0)
    return progress


def failure_message(what: str, returncode: int, reason: str, progress: PipProgress, output: list[str]) -> str:
    """One sentence: what failed, pip's own reason, and what to do about it."""
    if any("No space left on device" in line for line in output):
        return (f"pip could not install {what}: the disk is full ({reason}); free some space or choose another "
                "LOCATION, and run the set-up again.")
    if progress.network_trouble:
        return (f"pip could not install {what} because the network failed ({reason}; before that: "
                f"{progress.network_trouble[-1]}): check the proxy in QGIS's Settings -> Options -> Network or "
                "pip's configuration (pip.conf, PIP_INDEX_URL, PIP_CERT), or install offline from a WHEELHOUSE "
                "folder made with `make wheelhouse`.")
    return (f"pip could not install {what} (exit code {returncode}): {reason}; see pip's output above in the log, "
            "or install offline from a WHEELHOUSE folder made with `make wheelhouse`.")
