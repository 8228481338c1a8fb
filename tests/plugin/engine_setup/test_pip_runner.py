"""pip as a child process: its output streamed, its progress shown, its failures in one sentence, cancel.

pip downloads over real HTTP from a local server (no outside network), so it
prints the raw progress lines (``Progress <done> of <total>``) that move the bar.
"""

import functools
import http.server
import os
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from mobanet_qgis.engine_setup.feedback import ProgressBand, SetupCancelled
from mobanet_qgis.engine_setup.network import pip_environment
from mobanet_qgis.engine_setup.pip_runner import PipFailed, pip_install, pip_version, run_streamed

PYTHON = Path(sys.executable)


@pytest.fixture(scope="module")
def wheel_server(tmp_path_factory):
    """An HTTP find-links page with one 3 MB wheel, `bigpkg`."""
    folder = tmp_path_factory.mktemp("wheels")
    with zipfile.ZipFile(folder / "bigpkg-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("bigpkg/__init__.py", "")
        wheel.writestr("bigpkg/data.bin", os.urandom(3 * 1024 * 1024))  # incompressible: a real download
        wheel.writestr("bigpkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: bigpkg\nVersion: 1.0\n")
        wheel.writestr("bigpkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("bigpkg-1.0.dist-info/RECORD", "")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _options(url, target):
    return ["--no-deps", "--no-index", "--no-cache-dir", "--find-links", url, "--target", str(target)]


def test_pip_output_is_streamed_and_moves_the_progress_bar(recording_feedback, wheel_server, tmp_path):
    feedback = recording_feedback()
    env, _ = pip_environment(PYTHON, None)
    assert pip_version(PYTHON, env) >= (24, 1)
    progress = pip_install(PYTHON, [*_options(wheel_server, tmp_path / "site"), "bigpkg"], env, feedback,
                           ProgressBand(feedback, 10, 50), "bigpkg", raw_progress=True)
    assert (tmp_path / "site" / "bigpkg" / "data.bin").is_file()
    assert any("--progress-bar raw" in command for command in feedback.commands)
    assert any(line.startswith("Successfully installed bigpkg-1.0") for line in feedback.console)
    assert not any(line.startswith("Progress ") for line in feedback.console)  # raw lines become the bar
    assert any(text.endswith(": 100 %") and "bigpkg" in text for text in feedback.progress_texts)
    assert 10 <= min(feedback.percents) < max(feedback.percents) == 50
    assert feedback.percents == sorted(feedback.percents)
    assert not progress.errors


def test_a_failed_install_is_one_sentence_with_pips_reason(recording_feedback, wheel_server, tmp_path):
    feedback = recording_feedback()
    env, _ = pip_environment(PYTHON, None)
    with pytest.raises(PipFailed) as failed:
        pip_install(PYTHON, [*_options(wheel_server, tmp_path), "bigpkg==2.0"], env, feedback,
                    ProgressBand(feedback, 0, 100), "bigpkg", raw_progress=True)
    assert failed.value.reason.startswith("ERROR: No matching distribution found for bigpkg==2.0")
    message = str(failed.value)
    assert message.startswith("pip could not install bigpkg (exit code 1): ERROR: No matching distribution")
    assert "WHEELHOUSE" in message and "\n" not in message


def test_cancel_stops_the_child_at_once(recording_feedback, tmp_path):
    feedback = recording_feedback(cancel_when=lambda line: line.startswith("started"))
    script = "import os, time; print('started', os.getpid(), flush=True); time.sleep(600)"
    started = time.monotonic()
    with pytest.raises(SetupCancelled, match="engine environment is as it was before"):
        run_streamed([sys.executable, "-c", script], dict(os.environ), feedback)
    assert time.monotonic() - started < 30
    pid = int(feedback.console[0].split()[1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
