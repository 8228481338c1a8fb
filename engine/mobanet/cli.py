"""The `mobanet` command line: one sub-command per job.

Each module in `mobanet.commands` declares its parser in ``register(subparsers)``
and sets ``run(args, progress) -> dict | None``; this module adds the options
every command shares, turns SIGINT/SIGTERM into a clean `Cancelled`, and turns
`MobanetError` into a one-line message (or a JSON ``error`` event) and exit
code 2. Exit codes: 0 success, 1 internal error, 2 user error, 130 cancelled.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
from collections.abc import Sequence

from mobanet import __version__
from mobanet.errors import Cancelled, MobanetError
from mobanet.fileutil import write_error
from mobanet.progress import Progress

COMMANDS = ("segment", "train", "evaluate", "synth", "info", "import_")
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS)


def _raise_cancelled(signum: int, frame: object) -> None:
    raise Cancelled(f"Interrupted by signal {signal.Signals(signum).name}; partial outputs were removed.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobanet",
        description="MoBaNet: segment aerial scenes from an optical image and a DSM.",
    )
    parser.add_argument("--version", action="version", version=f"mobanet {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    out = common.add_mutually_exclusive_group()
    out.add_argument("--json-progress", action="store_true",
                     help="print progress, messages and the result as JSON lines on stdout (for the QGIS plugin)")
    out.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"mobanet.commands.{name}")
        module.register(subparsers, parents=[common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = Progress("json" if args.json_progress else "quiet" if args.quiet else "tqdm")
    signal.signal(signal.SIGTERM, _raise_cancelled)
    signal.signal(signal.SIGINT, _raise_cancelled)
    try:
        result = args.run(args, progress)
    except Cancelled as exc:
        progress.error(str(exc), kind="Cancelled")
        return 130
    except MobanetError as exc:
        progress.error(str(exc), kind=type(exc).__name__)
        return 2
    except OSError as exc:  # a write error outside an output set (they name their file themselves)
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        progress.error(str(write_error(exc.filename or "an output", exc)), kind="OutputError")
        return 2
    except Exception as exc:  # a bug: keep the traceback, still tell the plugin
        progress.error(f"internal error: {type(exc).__name__}: {exc}", kind="InternalError")
        if progress.mode == "json":
            import traceback

            traceback.print_exc(file=sys.stderr)
            return 1
        raise
    progress.result(**(result or {}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
