"""The blog post's CNN on scikit-learn's 8×8 digits, every parameter trained.

Run: python examples/digits_blog.py
"""

from minidl import Sequential
from minidl.data import load_digits
from minidl.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.optim import SGD

# The blog's split: train_test_split(X, y, test_size=0.2, random_state=42), images scaled to [0, 1].
X_train, X_test, y_train, y_test = load_digits()

model = Sequential([
    Conv2D(4, kernel_size=3),   # 4 filters of 3×3; in_channels inferred from the input
    ReLU(),
    MaxPool2D(2),
    Flatten(),
    Dense(10),                  # in_features inferred: 4 × 3 × 3 = 36
    SoftmaxCE(),
], input_shape=(1, 8, 8), seed=0)
model.summary()

optimizer = SGD(model.parameters(), lr=0.02, momentum=0.5)
history = model.fit(X_train, y_train, optimizer=optimizer, epochs=30, batch_size=4,
                    validation_data=(X_test, y_test), verbose=2)

print("test:", model.evaluate(X_test, y_test))
print("first ten predictions:", model.predict(X_test[:10]), "labels:", y_test[:10])
