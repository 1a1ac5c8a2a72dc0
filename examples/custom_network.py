"""A deeper network composed in code: two convolution blocks with "same" padding, a hidden dense layer.

It also shows the pieces under ``fit``: a hand-written training loop with
``forward_backward``, ``zero_grad`` and ``step``.

Run: python examples/custom_network.py
"""

import numpy as np

from minidl import Sequential
from minidl.data import load_digits
from minidl.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.optim import SGD

X_train, X_test, y_train, y_test = load_digits()

model = Sequential([
    Conv2D(16, kernel_size=3, padding="same"), ReLU(),   # (16, 8, 8)
    Conv2D(32, kernel_size=3, padding="same"), ReLU(),   # (32, 8, 8)
    MaxPool2D(2),                                        # (32, 4, 4)
    Flatten(),
    Dense(64), ReLU(),
    Dense(10),
    SoftmaxCE(),
], input_shape=(1, 8, 8), seed=0)
model.summary()

optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)

# A training loop of one's own: the same steps fit() takes, without the progress bar.
rng = np.random.default_rng(0)
batch_size = 32
for epoch in range(10):
    order = rng.permutation(len(X_train))
    losses = []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        optimizer.zero_grad()
        loss, _ = model.forward_backward(X_train[batch], y_train[batch])
        optimizer.step()
        losses.append(loss)
    print(f"epoch {epoch + 1:2d}: train loss {np.mean(losses):.4f}, "
          f"test accuracy {model.evaluate(X_test, y_test)['accuracy']:.4f}")
