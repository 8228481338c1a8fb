"""Errors a user can act on.

Every problem caused by input (files, options, model files) raises a
`MobanetError` whose message names the file and the fix. The CLI prints these
without a traceback (and as a JSON ``error`` event under ``--json-progress``);
anything else is a bug and keeps its traceback.
"""


class MobanetError(Exception):
    """Base class: a message written for the user."""


class InputError(MobanetError):
    """A raster, vector or option that cannot be used as given."""


class ModelFileError(MobanetError):
    """A model file that is missing, corrupt, unsafe or does not fit."""


class WeightsError(MobanetError):
    """Backbone weights that cannot be found or loaded."""


class OutputError(MobanetError):
    """An output that cannot be written: the disk is full, a size limit is hit, the folder is read-only."""


class Cancelled(MobanetError):
    """The run was interrupted (SIGINT/SIGTERM or a cancel request)."""


class ClusterError(MobanetError):
    """Distributed workers that cannot be started or keep dying (`mobanet.distributed`)."""
