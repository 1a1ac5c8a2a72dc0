"""The loop-based oracles the fast layers are tested against: they live beside the fast kernels, in minidl.kernels."""

from minidl.kernels import (  # noqa: F401  (re-exported for the tests)
    batchnorm2d_reference,
    conv2d_backward_reference,
    conv2d_reference,
    maxpool2d_backward_reference,
    maxpool2d_reference,
)
