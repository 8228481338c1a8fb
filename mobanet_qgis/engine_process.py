"""Run the MoBaNet engine as a separate process and relay its progress to Processing.

QGIS runs engines with heavy dependencies (GDAL, GRASS, SAGA) as separate
processes; MoBaNet does the same so that torch never loads inside QGIS. The
engine is ``python -m mobanet COMMAND ... --json-progress``: it writes one JSON
object a line on stdout (``progress``, ``info``, ``warning``, ``metrics``, then
one ``result`` or ``error``), see ``engine/mobanet/progress.py``.

Which Python runs the engine, first match wins:

1. the Processing setting *Engine Python* (Options -> Providers -> MoBaNet);
2. ``<repository>/.venv/bin/python`` when the plugin folder is the repository's
   ``mobanet_qgis/`` (``make install`` links it into the QGIS profile, so the
   link is resolved first);
3. ``$MOBANET_PYTHON`` (a Python with torch, timm and GDAL, for scripts and servers);
4. the engine environment that ``mobanet:setup`` ("MoBaNet -> Set up the engine")
   built for this QGIS profile (``mobanet_qgis.engine_setup``).

Whichever Python it is, the plugin's own engine (``<plugin>/engine/mobanet`` in
the release zip, ``<repository>/engine/mobanet`` beside a repository checkout)
comes first on its PYTHONPATH, so plugin and engine always match and the engine
finds the resources (embedded model, styles) shipped beside it. With none of
them, every algorithm fails at once with one sentence that says to run the
set-up.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from mobanet_qgis.engine_setup.environments import Location
from mobanet_qgis.engine_setup.feedback import SetupError
from mobanet_qgis.engine_setup.installer import staleness
from mobanet_qgis.engine_setup.qgis_settings import engine_location
from mobanet_qgis.engine_setup.sources import find_engine_source

PLUGIN_DIR = Path(__file__).resolve().parent
ENGINE_PYTHON_SETTING = "MOBANET_ENGINE_PYTHON"
ENGINE_PYTHON_VARIABLE = "MOBANET_PYTHON"
# JSON object {engine flag: dialog field label}; the engine's messages then name the
# fields the user sees instead of CLI flags (engine/mobanet/wording.py).
OPTION_LABELS_ENV = "MOBANET_OPTION_LABELS"

SET_UP_HINT = 'run "MoBaNet \N{RIGHTWARDS ARROW} Set up the engine" (`qgis_process run mobanet:setup`)'
NOT_SET_UP = (f"The MoBaNet engine is not set up in this QGIS profile: {SET_UP_HINT} once, "
              "then run this algorithm again.")

# After a cancel the engine gets SIGTERM (it removes its partial outputs and
# exits with 130); if it has not ended after this many seconds it is killed.
TERMINATE_GRACE_S = 10.0
POLL_INTERVAL_S = 0.1
STDERR_LINES_KEPT = 60

# Exit codes of the engine (engine/mobanet/cli.py).
EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130


@dataclass
class EngineCommand:
    """How to start the engine: the interpreter and the extra environment."""

    python: str
    env: dict[str, str] = field(default_factory=dict)
    source: str = ""
    notice: str = ""  # a warning for the log, e.g. an environment set up for another plugin version

    def argv(self, command: str, arguments: list[str]) -> list[str]:
        return [self.python, "-m", "mobanet", command, *arguments, "--json-progress"]


def _setting_python() -> str:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:  # Processing plugin not loaded (bare QgsApplication)
        return ""
    value = ProcessingConfig.getSetting(ENGINE_PYTHON_SETTING)
    return str(value).strip() if value else ""


def _venv_python(venv: Path) -> Path:
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _setup_environment(env: dict[str, str]) -> EngineCommand | None:
    """The engine environment that mobanet:setup made for this profile, when it is complete."""
    environment = Location(engine_location()).active()
    if environment is None:
        return None
    try:
        stale = staleness(environment.stamp() or {}, find_engine_source(PLUGIN_DIR))
    except SetupError:
        stale = None
    notice = f"The engine environment {environment.folder} may not fit this plugin: {stale}; {SET_UP_HINT}." \
        if stale else ""
    return EngineCommand(str(environment.python), {**env, "PYTHONNOUSERSITE": "1"},
                         f"engine environment {environment.folder}", notice)


def find_engine() -> EngineCommand:
    """The interpreter (and PYTHONPATH) that runs ``python -m mobanet``; see the module docstring."""
    env: dict[str, str] = {}
    try:  # the engine shipped with this plugin, in the zip or beside it in the repository, with its resources
        own_engine = str(find_engine_source(PLUGIN_DIR).root)
    except SetupError:
        own_engine = ""
    if own_engine:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (own_engine, os.environ.get("PYTHONPATH", "")) if p)

    configured = _setting_python()
    if configured:
        if not Path(configured).is_file():
            raise QgsProcessingException(
                f"The MoBaNet engine Python '{configured}' set in Processing -> Options -> Providers -> MoBaNet "
                f"does not exist: clear that setting and {SET_UP_HINT}, or point it at a Python with torch, timm "
                "and GDAL.")
        return EngineCommand(configured, env, "Processing setting")

    repo_python = _venv_python(PLUGIN_DIR.parent / ".venv")
    if repo_python.is_file():
        return EngineCommand(str(repo_python), env, "repository .venv")

    variable = os.environ.get(ENGINE_PYTHON_VARIABLE, "").strip()
    if variable:
        if not Path(variable).is_file() and not shutil.which(variable):
            raise QgsProcessingException(
                f"The MoBaNet engine Python '{variable}' named by the environment variable {ENGINE_PYTHON_VARIABLE} "
                f"does not exist: unset {ENGINE_PYTHON_VARIABLE} and {SET_UP_HINT}, or point it at a Python with "
                "torch, timm and GDAL.")
        return EngineCommand(variable, env, f"environment variable {ENGINE_PYTHON_VARIABLE}")

    set_up = _setup_environment(env)
    if set_up is not None:
        return set_up
    raise QgsProcessingException(NOT_SET_UP)


def _read_lines(stream: Any, name: str, sink: queue.Queue) -> None:
    """Reader thread: hand every line of a pipe to the polling loop as (name, line), then (name, None) at EOF."""
    try:
        for line in iter(stream.readline, ""):
            sink.put((name, line.rstrip("\r\n")))
    finally:
        sink.put((name, None))


def _format_metrics(event: dict[str, Any]) -> str:
    parts = []
    for key, value in event.items():
        if key == "event" or isinstance(value, (dict, list)):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return "Metrics: " + " ".join(parts)


def _remove_new_files(paths: list[str], existed_before: set[str]) -> None:
    """After a cancel: remove outputs (and their sidecars) that this run created."""
    for path in paths:
        for candidate in (path, path + ".aux.xml", str(Path(path).with_suffix(".qml"))):
            if candidate not in existed_before and os.path.isfile(candidate):
                os.remove(candidate)


class EngineRun:
    """One engine process: start, relay its events to a feedback, stop it on cancel.

    `outputs` are the files the command may create; they are removed when the
    user cancels so that nothing half-written is left behind. `option_labels`
    maps engine flags to the dialog's field labels, for the engine's messages.
    """

    def __init__(self, command: str, arguments: list[str], feedback: QgsProcessingFeedback | None,
                 outputs: list[str] | None = None, engine: EngineCommand | None = None,
                 option_labels: dict[str, str] | None = None):
        self.command = command
        self.arguments = arguments
        self.option_labels = dict(option_labels or {})
        self.feedback = feedback if feedback is not None else QgsProcessingFeedback()
        self.outputs = [str(p) for p in (outputs or []) if p]
        self.engine = engine or find_engine()
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        self.pid: int | None = None
        self._progress_message = ""

    # -- event handling -------------------------------------------------------------------
    def _handle_stdout(self, line: str) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            self.feedback.pushConsoleInfo(line)
            return
        kind = event["event"]
        if kind == "progress":
            fraction = event.get("fraction") or 0.0
            self.feedback.setProgress(100.0 * max(0.0, min(1.0, float(fraction))))
            message = str(event.get("message") or "")
            if message and message != self._progress_message:
                self._progress_message = message
                self.feedback.setProgressText(message)
        elif kind == "info":
            self.feedback.pushInfo(str(event.get("message", "")))
        elif kind == "warning":
            self.feedback.pushWarning(str(event.get("message", "")))
        elif kind == "metrics":
            self.feedback.pushInfo(_format_metrics(event))
        elif kind == "result":
            self.result = {k: v for k, v in event.items() if k != "event"}
        elif kind == "error":
            self.error = event
        else:
            self.feedback.pushDebugInfo(line)

    def _handle_stderr(self, line: str) -> None:
        self.stderr_tail.append(line)
        self.feedback.pushConsoleInfo(line)

    # -- process control ------------------------------------------------------------------
    def _start(self) -> subprocess.Popen:
        argv = self.engine.argv(self.command, self.arguments)
        env = dict(os.environ)
        env.update(self.engine.env)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        env[OPTION_LABELS_ENV] = json.dumps(self.option_labels)
        self.feedback.pushCommandInfo(" ".join(_quote(a) for a in argv))
        self.feedback.pushDebugInfo(f"Engine Python from the {self.engine.source}: {self.engine.python}")
        if self.engine.notice:
            self.feedback.pushWarning(self.engine.notice)
        try:
            # Same process group: a Ctrl-C on a terminal running qgis_process reaches the engine too.
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=env, text=True, encoding="utf-8", errors="replace", bufsize=1)
        except OSError as exc:
            raise QgsProcessingException(
                f"Could not start the MoBaNet engine with '{self.engine.python}' (from the {self.engine.source}): "
                f"{exc}; {SET_UP_HINT}, or check Processing -> Options -> Providers -> MoBaNet -> Engine "
                "Python.") from exc
        self.pid = process.pid
        self.feedback.pushDebugInfo(f"Engine process {process.pid} started")
        return process

    def _stop(self, process: subprocess.Popen) -> None:
        """SIGTERM (the engine cleans up and exits 130), then kill after a grace period."""
        if process.poll() is not None:
            return
        self.feedback.pushInfo("Cancelling: stopping the MoBaNet engine...")
        process.terminate()
        try:
            process.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            self.feedback.pushWarning(f"The engine did not stop within {TERMINATE_GRACE_S:.0f} s; killing it.")
            process.kill()
            process.wait()

    def run(self) -> dict[str, Any]:
        """Run to the end and return the engine's ``result`` event (without its ``event`` key)."""
        existed_before = {p for out in self.outputs
                          for p in (out, out + ".aux.xml", str(Path(out).with_suffix(".qml"))) if os.path.exists(p)}
        process = self._start()
        lines: queue.Queue = queue.Queue()
        readers = [
            threading.Thread(target=_read_lines, args=(process.stdout, "stdout", lines), daemon=True),
            threading.Thread(target=_read_lines, args=(process.stderr, "stderr", lines), daemon=True),
        ]
        for reader in readers:
            reader.start()

        cancelled = False
        open_streams = 2
        try:
            while open_streams:
                if not cancelled and self.feedback.isCanceled():
                    cancelled = True
                    self._stop(process)
                try:
                    name, line = lines.get(timeout=POLL_INTERVAL_S)
                except queue.Empty:
                    continue
                if line is None:
                    open_streams -= 1
                elif name == "stdout":
                    self._handle_stdout(line)
                else:
                    self._handle_stderr(line)
            returncode = process.wait()
        except BaseException:
            self._stop(process)
            raise
        finally:
            for reader in readers:
                reader.join(timeout=1.0)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

        if cancelled or self.feedback.isCanceled() or returncode == EXIT_CANCELLED:
            _remove_new_files(self.outputs, existed_before)
            raise QgsProcessingException("MoBaNet: cancelled by the user; no output was written.")
        if returncode != 0 or self.error is not None:
            raise QgsProcessingException(self._error_message(returncode))
        if self.result is None:
            raise QgsProcessingException(
                f"MoBaNet {self.command}: the engine ended without a result. {self._stderr_hint()}")
        self.feedback.setProgress(100.0)
        return self.result

    def _stderr_hint(self) -> str:
        tail = [line for line in self.stderr_tail if line.strip()][-8:]
        return ("Engine output:\n" + "\n".join(tail)) if tail else ""

    def _error_message(self, returncode: int) -> str:
        if self.error is not None:
            message = str(self.error.get("message") or "unknown error")
            if returncode == EXIT_USER_ERROR or self.error.get("kind") not in (None, "InternalError"):
                return message
            return f"{message}\n{self._stderr_hint()}".rstrip()
        missing = _missing_module(self.stderr_tail)
        if missing:
            return (f"The engine Python '{self.engine.python}' (from the {self.engine.source}) lacks the module "
                    f"'{missing}': {SET_UP_HINT}, or set Processing -> Options -> Providers -> MoBaNet -> Engine "
                    "Python to a Python that has torch, timm, numpy, GDAL and the mobanet engine.")
        return (f"MoBaNet {self.command} failed (engine exit code {returncode}) without an error message. "
                f"{self._stderr_hint()}").rstrip()


_MISSING_MODULE = re.compile(r"No module named '?([A-Za-z0-9_.]+)'?")


def _missing_module(stderr: deque[str] | list[str]) -> str | None:
    """The module in the first "No module named X" of the engine's stderr (ModuleNotFoundError or `-m`)."""
    for line in stderr:
        match = _MISSING_MODULE.search(line)
        if match:
            return match.group(1)
    return None


def _quote(argument: str) -> str:
    return f'"{argument}"' if (" " in argument or not argument) else argument


def run_engine(command: str, arguments: list[str], feedback: QgsProcessingFeedback | None,
               outputs: list[str] | None = None, engine: EngineCommand | None = None,
               option_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m mobanet COMMAND ARGUMENTS --json-progress``; return its result or raise.

    `engine` is the one `find_engine` gave (found again when None). Raises
    QgsProcessingException with the engine's own message on errors (naming the
    fields of `option_labels` rather than flags), and after a cancel (then the
    new `outputs` are removed).
    """
    return EngineRun(command, arguments, feedback, outputs, engine, option_labels).run()

