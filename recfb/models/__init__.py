"""Recommender models. Every model follows :class:`recfb.models.base.Recommender`."""
from recfb.models.base import Recommender, load, register
from recfb.models.cml import CML
from recfb.models.ease import EASE
from recfb.models.implicit_wrappers import ImplicitALS, ImplicitBPR
from recfb.models.itemknn import ItemKNN
from recfb.models.lightgcn import LightGCN
from recfb.models.mf import BPR, MF
from recfb.models.popular import MostPopular
from recfb.models.sequential import BERT4Rec, SASRec, gSASRec

__all__ = ["SASRec", "gSASRec", "BERT4Rec",
           "Recommender", "load", "register", "MostPopular", "ItemKNN", "EASE", "ImplicitALS", "ImplicitBPR", "MF", "BPR", "CML",
           "LightGCN"]
