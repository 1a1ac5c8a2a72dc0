"""Layers. Each family lives in its own module; all are re-exported here."""

from .activations import GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiHeadAttention
from .augmentation import RandomCrop, RandomFlip, RandomRotation, RandomShift
from .base import Buffer, Layer, Parameter
from .branches import Parallel, Residual
from .containers import Sequential
from .conv import Conv2D
from .conv1d import Conv1D
from .core import Dense, Flatten
from .embedding import Embedding, PositionalEmbedding
from .losses import MSE, Loss, SigmoidBCE, SoftmaxCE
from .normalization import BatchNorm2D, LayerNorm
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .pooling1d import GlobalAvgPool1D, GlobalMaxPool1D, MaxPool1D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from .regularization import Dropout
from .upsampling import Upsample2D

__all__ = [
    "Layer", "Parameter", "Buffer",
    "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Upsample2D", "BatchNorm2D", "Dropout",
    "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Identity",
    "Flatten", "Dense", "Loss", "SoftmaxCE", "SigmoidBCE", "MSE", "Sequential", "Residual", "Parallel",
    "RandomFlip", "RandomShift", "RandomCrop", "RandomRotation",
    "Embedding", "PositionalEmbedding", "LayerNorm", "GELU", "MultiHeadAttention",
    "Conv1D", "MaxPool1D", "GlobalAvgPool1D", "GlobalMaxPool1D", "SimpleRNN", "LSTM", "GRU", "Bidirectional",
]
