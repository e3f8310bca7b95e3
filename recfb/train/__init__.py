"""The one training loop for every embedding model (scorer + objective + samplers + weights)."""
from recfb.train.loop import Scorer, TrainConfig, Trainer, TrainingInterrupted

__all__ = ["Scorer", "TrainConfig", "Trainer", "TrainingInterrupted"]
