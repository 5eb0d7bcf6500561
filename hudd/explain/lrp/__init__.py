"""LRP relevance for every internal layer in one batched pass (see :mod:`hudd.explain.lrp.engine`)."""

from .canonize import UnsupportedLayer, fold_batchnorm
from .composites import COMPOSITES, Composite, get_composite, register_composite
from .engine import Explainer, layer_aliases, relevance
from .rules import AlphaBeta, Epsilon, Flat, Pass, Rule, ZPlus, stabilise

__all__ = [
    "Explainer", "relevance", "layer_aliases", "fold_batchnorm", "UnsupportedLayer", "COMPOSITES", "Composite", "get_composite",
    "register_composite", "Rule", "Epsilon", "ZPlus", "AlphaBeta", "Flat", "Pass", "stabilise",
]
