"""gSASRec (Petrov & Macdonald, RecSys 2023): SASRec trained with gBCE."""
from __future__ import annotations

from recfb.models.sequential.sasrec import SASRec


class gSASRec(SASRec):  # noqa: N801 - the paper's name
    """SASRec with gBCE (Petrov & Macdonald, RecSys 2023): 256 uniform negatives and
    calibration ``t = 0.75`` by default; otherwise the same as :class:`SASRec`."""

    search_space = {"factors": ("int", 20, 120, 10), "learning_rate": ("float", 3e-4, 1e-2, "log"),
                    "dropout": ("float", 0.0, 0.5), "max_len": ("int", 20, 200, "log"), "num_blocks": ("int", 1, 3),
                    "num_negatives": ("int", 16, 512, "log"), "gbce_t": ("float", 0.0, 1.0)}

    def __init__(self, *, factors: int = 50, iterations: int | None = None, learning_rate: float = 3e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 1,
                 dropout: float = 0.2, num_negatives: int = 256, gbce_t: float = 0.75,
                 weight_decay: float = 0.0, patience=None, eval_every: int | None = None, valid_negatives=None,
                 random_state=0, device="auto", l2: float | None = None):
        super().__init__(factors=factors, iterations=iterations, learning_rate=learning_rate, batch_size=batch_size,
                         max_len=max_len, num_blocks=num_blocks, num_heads=num_heads, dropout=dropout, loss="gbce",
                         num_negatives=num_negatives, gbce_t=gbce_t, weight_decay=weight_decay, patience=patience,
                         eval_every=eval_every, valid_negatives=valid_negatives, random_state=random_state,
                         device=device, l2=l2)



gSASRec._parameter_constraints = {k: v for k, v in SASRec._parameter_constraints.items()
                                  if k in gSASRec._param_names()}
