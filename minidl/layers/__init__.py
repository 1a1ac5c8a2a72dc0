"""Layers. Each family lives in its own module; all are re-exported here."""

from .activations import ReLU
from .base import Layer, Parameter
from .conv import Conv2D
from .core import Dense, Flatten
from .losses import SoftmaxCE
from .pooling import MaxPool2D

__all__ = ["Layer", "Parameter", "Conv2D", "MaxPool2D", "ReLU", "Flatten", "Dense", "SoftmaxCE"]
