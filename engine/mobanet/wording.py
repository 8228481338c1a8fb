"""Options named in the words of the interface the user is in.

At the command line a message names an option by its flag (``--weights``).
Under the QGIS plugin the user never saw flags: the plugin sets
``MOBANET_OPTION_LABELS`` to a JSON object mapping flags to its dialog's
field labels (``{"--weights": "Backbone weights file"}``), and the same
message then names the field (``the 'Backbone weights file' field``). Every
engine message that names an option goes through `option`.
"""

from __future__ import annotations

import json
import os

LABELS_VARIABLE = "MOBANET_OPTION_LABELS"


def _labels() -> dict[str, str]:
    """The flag -> field label map from the environment ({} at the command line or when unreadable)."""
    text = os.environ.get(LABELS_VARIABLE)
    if not text:
        return {}
    try:
        labels = json.loads(text)
    except json.JSONDecodeError:
        return {}
    if not isinstance(labels, dict):
        return {}
    return {str(flag): str(label) for flag, label in labels.items() if isinstance(label, str) and label}


def option(flag: str) -> str:
    """``--flag`` at the command line; ``the 'Field label' field`` where the plugin labels that flag."""
    label = _labels().get(flag)
    return f"the '{label}' field" if label else flag


def option_list(*flags: str) -> str:
    """Several options as one phrase: ``--optical, --dsm and --labels``."""
    names = [option(flag) for flag in flags]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
