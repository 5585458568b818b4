"""Comparing Python feature values as Feast's `to_dict()` gives them: NaN equals NaN
(float and Decimal), sets compare as sets, through lists, tuples and dicts."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


def canonical(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, Decimal) and value.is_nan():
        return ("decimal-nan", str(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [canonical(item) for item in value])
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(repr(canonical(item)) for item in value))
    if isinstance(value, dict):
        return ("dict", {repr(canonical(key)): canonical(item) for key, item in value.items()})  # NaN keys too
    return (type(value).__name__, value)
