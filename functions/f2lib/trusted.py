"""Pydantic models built from fields already known valid, without validating them again.

What ``BaseModel.model_construct`` makes when every field is given (all fields set, no extra,
no private state), without its per-field bookkeeping: the pipeline's hot paths check their
fields once themselves and fall back to full validation for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def trusted(cls: type[M], fields: Mapping[str, Any]) -> M:
    """An instance of ``cls`` holding ``fields`` (every field of the model, each valid)."""
    made = cls.__new__(cls)
    object.__setattr__(made, "__dict__", dict(fields))
    object.__setattr__(made, "__pydantic_fields_set__", set(fields))
    object.__setattr__(made, "__pydantic_extra__", None)
    object.__setattr__(made, "__pydantic_private__", None)
    return made
