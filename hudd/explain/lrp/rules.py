"""LRP rules as small objects: each says how to modify a layer's inputs and parameters.

Notation: a layer maps input ``x`` to ``z = layer(x; W, b)``; relevance ``R_out`` arrives at its
output and leaves at its input as ``R_in``. Every rule here is a sum of *parts*; a part is a
coefficient and a list of *terms* ``layer(in_mod(x); param_mod(W, b))`` whose sum ``z_p`` is the
part's (stabilised) denominator:

    R_in = sum_p coef_p * sum_t in_mod_t(x) * d z_p / d in_mod_t(x) . (R_out / stabilise(z_p))

- :class:`Epsilon` (LRP-0 for a tiny epsilon): one part, one term, parameters unchanged.
- :class:`ZPlus`: positive inputs with positive weights plus negative inputs with negative weights.
- :class:`AlphaBeta`: ``alpha`` times the positive contributions minus ``beta`` times the negative ones.
- :class:`Flat`: all inputs and weights set to one (relevance spread uniformly; first layer only).
- :class:`Pass`: no parts; an element-wise layer hands each output's relevance to the input at the
  same position (activations, normalisations: see :mod:`hudd.explain.lrp.composites`).

The engine (:mod:`hudd.explain.lrp.engine`) turns a rule into a forward output whose value is the
layer's normal output and whose gradient is the rule's, so one backward pass gives every layer's
relevance. Rules are checked at construction, as zennit's.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["stabilise", "Rule", "Epsilon", "ZPlus", "AlphaBeta", "Flat", "Pass", "for_nonnegative"]


def stabilise(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)``, with sign(0) = +1: the one place epsilon enters a denominator."""
    return z + torch.where(z >= 0, epsilon, -epsilon)


def _keep(x: torch.Tensor) -> torch.Tensor:
    return x


def _positive(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=0)


def _negative(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(max=0)


def _ones(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def for_nonnegative(in_mod: Callable) -> Callable | None:
    """The input modifier ``in_mod`` on an input with no negative value: the identity, or None when the term vanishes."""
    if in_mod is _negative:
        return None
    return _keep if in_mod is _positive else in_mod


# A term: (input modifier, weight modifier, bias modifier or None for "no bias").
Term = tuple[Callable, Callable, Callable | None]


class Rule:
    """Base class: ``parts`` is a list of ``(coefficient, [terms])``; ``epsilon`` stabilises each part's denominator.

    ``uses_input`` is False for rules that ignore the input values (Flat): the engine feeds
    them a tensor of ones instead of the layer's input and reads their relevance from it.
    """

    name = "rule"
    uses_input = True

    def __init__(self, parts: list[tuple[float, list[Term]]], epsilon: float):
        if epsilon < 0:
            raise ValueError(f"{type(self).__name__}: epsilon == {epsilon}, must be >= 0")
        self.parts = parts
        self.epsilon = epsilon

    @property
    def sign_dependent(self) -> bool:
        """True when a term takes the positive or negative part of the input (then non-negative inputs allow a shortcut)."""
        return any(in_mod in (_positive, _negative) for _, terms in self.parts for in_mod, _, _ in terms)

    @property
    def is_identity(self) -> bool:
        """True when the rule's only term is the layer itself (then the layer's own output is reused)."""
        return len(self.parts) == 1 and self.parts[0][0] == 1.0 and len(self.parts[0][1]) == 1 and self.parts[0][1][0][:2] == (_keep, _keep) and self.parts[0][1][0][2] is _keep

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon})"


class Epsilon(Rule):
    """LRP-epsilon (LRP-0 as epsilon -> 0): ``R_in = x * W^T (R_out / stabilise(z))``.

    Parameters
    ----------
    epsilon : float, default=1e-6
    zero_bias : bool, default=False
        Drop the bias from the denominator (and so from the layer's relevance budget).
    """

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6, *, zero_bias: bool = False):
        super().__init__([(1.0, [(_keep, _keep, None if zero_bias else _keep)])], epsilon)


class ZPlus(Rule):
    """z+: ``x+ W+`` plus ``x- W-`` in the denominator (bias: its positive part, or none with ``zero_bias``)."""

    name = "zplus"

    def __init__(self, epsilon: float = 1e-6, *, zero_bias: bool = True):
        super().__init__([(1.0, [(_positive, _positive, None if zero_bias else _positive), (_negative, _negative, None)])], epsilon)


class AlphaBeta(Rule):
    """Alpha-beta: ``alpha`` times the positive contributions' share minus ``beta`` times the negative ones'.

    Raises
    ------
    ValueError
        ``alpha`` or ``beta`` negative, or ``alpha - beta != 1`` (relevance would not be conserved).
    """

    name = "alpha-beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, epsilon: float = 1e-6, *, zero_bias: bool = False):
        if alpha < 0 or beta < 0:
            raise ValueError(f"AlphaBeta: alpha == {alpha}, beta == {beta}, both must be >= 0")
        if alpha - beta != 1.0:
            raise ValueError(f"AlphaBeta: alpha - beta == {alpha - beta}, must be 1")
        bias_pos = None if zero_bias else _positive
        bias_neg = None if zero_bias else _negative
        super().__init__([
            (alpha, [(_positive, _positive, bias_pos), (_negative, _negative, None)]),
            (-beta, [(_positive, _negative, bias_neg), (_negative, _positive, None)]),
        ], epsilon)
        self.alpha, self.beta = alpha, beta


class Flat(Rule):
    """Flat: inputs and weights set to one, no bias: relevance is spread evenly over each output's receptive field."""

    name = "flat"
    uses_input = False

    def __init__(self, epsilon: float = 1e-6):
        super().__init__([(1.0, [(_keep, _ones, None)])], epsilon)  # the engine feeds ones as the input


class Pass(Rule):
    """Pass-through for element-wise layers: ``R_in = R_out`` position by position (zennit's ``Pass``).

    The engine gives the input the gradient ``grad_out * y / stabilise(x)``, so input x gradient is
    ``y * grad_out``, the relevance at the output. ``epsilon`` only guards inputs that are exactly zero.
    """

    name = "pass"

    def __init__(self, epsilon: float = 1e-12):
        super().__init__([], epsilon)
