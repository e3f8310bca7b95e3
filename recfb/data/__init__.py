"""Interaction data: the :class:`Interactions` container, id maps, readers and splits."""
from recfb.data import split
from recfb.data.idmap import IdMap
from recfb.data.interactions import Interactions, concatenate, read_interactions

__all__ = ["Interactions", "IdMap", "concatenate", "read_interactions", "split"]
