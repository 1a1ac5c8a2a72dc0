"""Export every preset to ONNX and PyTorch and print the largest difference from minidl's predict_proba.

The digits presets are trained for 3 epochs with their recipe on the blog's split and compared on
its 360 test images; presets for other input shapes (lenet) keep their seed-0 weights and are
compared on 360 random images.

Run: python examples/export_presets.py        (needs: pip install "minidl[onnx,torch]")
"""

from __future__ import annotations

import dataclasses
import inspect
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from minidl import Sequential, presets
from minidl.data import load_digits
from minidl.export import to_onnx, to_torch


def main() -> None:
    X_train, X_test, y_train, _ = load_digits()
    print("| preset | ONNX Runtime | PyTorch |\n|---|---|---|")
    for name, build in vars(presets).items():
        if not (inspect.isfunction(build) and build.__module__ == presets.__name__
                and inspect.signature(build).return_annotation in ("Sequential", Sequential)):
            continue
        model = build(seed=0)
        if model.input_shape == X_train.shape[1:] and name in presets.RECIPES:
            dataclasses.replace(presets.RECIPES[name], epochs=3).fit(model, X_train, y_train, verbose=0)
            X = X_test
        else:
            X = np.random.default_rng(0).standard_normal((360, *model.input_shape)).astype(np.float32)
        expected = model.predict_proba(X)
        with tempfile.TemporaryDirectory() as tmp:
            to_onnx(model, Path(tmp) / "model.onnx")
            onnx_out = ort.InferenceSession(str(Path(tmp) / "model.onnx")).run(None, {"input": X})[0]
        with torch.no_grad():
            torch_out = to_torch(model)(torch.from_numpy(X)).numpy()
        print(f"| `{name}` | {np.abs(onnx_out - expected).max():.1e} | {np.abs(torch_out - expected).max():.1e} |")


if __name__ == "__main__":
    main()
