"""Sub-commands of the `mobanet` CLI; each module has ``register(subparsers, parents)``."""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only when there is one worth reading (not None/False, not already said)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def band_list(text: str) -> list[int]:
    """``--bands 1,2,3`` as a list of band numbers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected band numbers like 1,2,3, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected band numbers like 1,2,3")
    return values
