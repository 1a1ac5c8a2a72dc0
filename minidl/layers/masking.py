"""Checks for the sequence masks that sequence layers take (the mask protocol of docs/sequences.md).

A mask is a bool array of shape ``(N, T)``, True at the valid (not padded) steps of a batch of
sequences ``(N, T, ...)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_mask", "reject_mask"]


def check_mask(mask: Any, x: np.ndarray, owner: str) -> np.ndarray | None:
    """``mask`` as a bool ``(N, T)`` array for the batch ``x`` of shape ``(N, T, ...)``, or ``None``.

    Raises ``TypeError`` for a mask that is not a bool array and ``ValueError`` for one whose
    shape is not ``x.shape[:2]``, naming ``owner``.
    """
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = f"an array of dtype {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"{owner}: mask must be a bool numpy array (True at valid steps), got {got}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"{owner}: mask must have shape (N, T) = {x.shape[:2]} for input of shape {x.shape}, "
                         f"got {mask.shape}")
    return mask


def reject_mask(mask: Any, owner: str, why: str) -> None:
    """A ``ValueError`` naming ``owner`` when a mask arrives at a layer that cannot honour one."""
    if mask is not None:
        raise ValueError(f"{owner} cannot take a sequence mask: {why}. Drop the mask first (no mask_zero=True "
                         "upstream), or put the layer before the one that makes the mask")
