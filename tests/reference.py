"""The loop-based oracles every backend is tested against: they live in minidl.backend.reference."""

from minidl.backend.reference import (  # noqa: F401  (re-exported for the tests)
    batchnorm2d_reference,
    conv2d_backward_reference,
    conv2d_reference,
    maxpool2d_backward_reference,
    maxpool2d_reference,
)
