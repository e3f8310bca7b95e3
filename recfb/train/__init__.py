"""Training: what a run is (:class:`TrainSpec`, :mod:`recfb.train.spec`), the one place a
batch's loss is computed (:class:`PairStep`, :mod:`recfb.train.step`), and the epoch loop
with its pair and sequence trainers (:mod:`recfb.train.loop`, :mod:`recfb.train.sequence`)."""
from recfb.train.loop import EpochLoop, Scorer, TrainConfig, Trainer, TrainingInterrupted
from recfb.train.spec import TrainSpec
from recfb.train.step import PairStep

__all__ = ["EpochLoop", "PairStep", "Scorer", "TrainConfig", "TrainSpec", "Trainer", "TrainingInterrupted"]
