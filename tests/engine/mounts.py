"""Real small or read-only file systems for tests: a tmpfs in a private mount namespace.

`on_tmpfs` runs a command with a fresh tmpfs mounted on a folder (visible to
that command only, gone when it ends), then lists what the command left in
that folder, so a test sees both the command's output and the leftovers.
Needs util-linux ``unshare`` and user namespaces (root in CI works as well).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

LISTING_MARK = "--- files left on the tmpfs ---"


def on_tmpfs(folder: Path, command: list[str], size_kb: int = 1024, readonly: bool = False,
             **kwargs: object) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``command`` with a tmpfs of ``size_kb`` on ``folder``; (its result, the file names left there)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k,mode=0777" + (",ro" if readonly else "")
    script = (f'mount -t tmpfs -o {options} none "$0" || exit 99; "$@"; code=$?; '
              f'echo "{LISTING_MARK}" >&2; ls -A "$0" >&2; exit $code')
    done = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script, str(folder), *command],
                          capture_output=True, text=True, **kwargs)
    assert done.returncode != 99, f"cannot mount a tmpfs here: {done.stderr}"
    stderr, _, listing = done.stderr.rpartition(LISTING_MARK)
    done.stderr = stderr
    return done, listing.split()
