"""Fine-tuning MoBaNet: window sampling, the schedule, DDP, logs and the training loop."""

from mobanet.train.trainer import SceneFiles, TrainOptions, train

__all__ = ["SceneFiles", "TrainOptions", "train"]
