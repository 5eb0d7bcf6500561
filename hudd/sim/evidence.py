"""What a description of an injected hazard's cluster should name, as each simulator family publishes it."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Evidence"]


class Evidence(NamedTuple):
    """What a description of a hazard's cluster should name: the ``parameter`` of ``params.csv`` the hazard
    changes, and the image ``property`` it changes (None: none that a pixel statistic shows). A direction
    is ``low``, ``high`` or ``outside`` (far from the nominal centre, either way; ``any`` for a property
    whose direction depends on the image, such as a hue)."""

    parameter: str
    direction: str
    property: str | None = None
    property_direction: str = "any"
