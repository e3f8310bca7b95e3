"""Sequential recommenders: SASRec (Kang & McAuley, ICDM 2018) with BCE, gBCE (gSASRec,
Petrov & Macdonald, RecSys 2023), sampled-softmax and full-softmax objectives, and BERT4Rec
(Sun et al., CIKM 2019).

Modules: :mod:`.histories` (packed per-user sequences), :mod:`.encoder` (the transformer),
:mod:`.schedule` (how ``iterations=None`` chooses the epochs), :mod:`.sasrec`,
:mod:`.gsasrec`, :mod:`.bert4rec`; the objectives live in :mod:`recfb.losses.sequence`.

Histories are stored per user (packed as ``hist_indptr``/``hist_items``) and scoring takes
the last ``max_len`` of them, so ``recommend`` keeps implicit's signature: ``user_items`` only
filters.
"""
from recfb.losses.sequence import gbce_beta
from recfb.models.sequential.bert4rec import BERT4Rec
from recfb.models.sequential.encoder import SequenceEncoder, _Block
from recfb.models.sequential.gsasrec import gSASRec
from recfb.models.sequential.histories import holdout_last, pack_sequences, pad_left, trim
from recfb.models.sequential.sasrec import LOSSES, SASRec
from recfb.models.sequential.schedule import (
    AUTO_MAX_EPOCHS,
    AUTO_PATIENCE,
    AUTO_PATIENCE_FRACTION,
    AUTO_PLATEAU_STEPS,
    EVAL_STEPS,
    HOLDOUT_FRACTION,
    HOLDOUT_MAX,
    HOLDOUT_MIN,
    NOISE_Z,
    AutoStopping,
    auto_eval_every,
    choose_epoch,
    noise_band,
)

__all__ = ["SASRec", "gSASRec", "BERT4Rec", "SequenceEncoder", "LOSSES", "gbce_beta", "pack_sequences", "pad_left",
           "holdout_last", "trim", "auto_eval_every", "AutoStopping", "choose_epoch", "noise_band", "HOLDOUT_FRACTION",
           "HOLDOUT_MIN", "HOLDOUT_MAX", "EVAL_STEPS", "AUTO_PATIENCE", "AUTO_PATIENCE_FRACTION", "AUTO_PLATEAU_STEPS",
           "NOISE_Z", "AUTO_MAX_EPOCHS", "_Block"]
