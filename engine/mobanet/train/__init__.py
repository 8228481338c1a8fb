"""Fine-tuning MoBaNet: options, window sampling, the schedule, DDP, validation, checkpoints and the loop."""

from mobanet.train.options import SceneFiles, TrainOptions
from mobanet.train.trainer import train

__all__ = ["SceneFiles", "TrainOptions", "train"]
