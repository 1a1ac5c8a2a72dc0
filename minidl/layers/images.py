"""What every image layer checks first: per-sample shapes ``(C, H, W)``."""

from __future__ import annotations

from .base import Shape

__all__ = ["image_shape"]


def image_shape(input_shape: Shape, owner: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of a per-sample image shape; a ``ValueError`` naming ``owner`` for any other shape.

    Args:
        input_shape: the per-sample shape a layer is built for (no batch axis).
        owner: the layer's name, for the message.

    Shape:
        - ``input_shape``: ``(C, H, W)``.

    Example::

        >>> image_shape((3, 32, 32), "conv")
        (3, 32, 32)
    """
    if len(input_shape) != 3:
        raise ValueError(
            f"{owner}: expects images (N, C, H, W), got per-sample shape {tuple(input_shape)} "
            f"(batch shape (N, {', '.join(map(str, input_shape))}))"
        )
    c, h, w = input_shape
    return c, h, w
