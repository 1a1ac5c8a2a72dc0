"""Bad input gets a clear error; training never loses work (NaN stop, Ctrl-C).

``CASES`` and ``CLI_CASES`` are the single source of the bad inputs: they drive the
parametrised tests here and the table in docs/robustness.md (``python tests/gen_robustness_doc.py``
rewrites it; ``test_robustness_doc_is_up_to_date`` fails when it is stale).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

import minidl
from minidl import Sequential, cli
from minidl.callbacks import Callback, ModelCheckpoint
from minidl.guard import NonFiniteLossError
from minidl.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU, SoftmaxCE
from minidl.data import load_digits
from minidl.optim import SGD
from minidl.presets import blog_cnn

DOC = Path(__file__).resolve().parent.parent / "docs" / "robustness.md"


def make_model(input_shape=(1, 8, 8), seed=0, classes=3, **kwargs) -> Sequential:
    """The blog's architecture, small: Conv2D → ReLU → MaxPool2D → Flatten → Dense → SoftmaxCE."""
    return Sequential([Conv2D(2, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(classes), SoftmaxCE()],
                      input_shape=input_shape, seed=seed, **kwargs)


def make_data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), np.arange(n) % 3


def namespace() -> dict[str, Any]:
    """Names a case's code may use: ``model``, ``other`` (built for (1, 8, 8), 3 classes), ``unbuilt``, ``X``, ``y``."""
    X, y = make_data()
    return dict(np=np, Sequential=Sequential, SGD=SGD, Callback=Callback, ModelCheckpoint=ModelCheckpoint,
                Conv2D=Conv2D, Dense=Dense, Dropout=Dropout, Flatten=Flatten, MaxPool2D=MaxPool2D, ReLU=ReLU,
                SoftmaxCE=SoftmaxCE,
                model=make_model(), other=make_model(), unbuilt=make_model(input_shape=None), X=X, y=y)


class Case(NamedTuple):
    section: str
    code: str         # evaluated in namespace(); shown in the doc
    error: type       # ValueError or TypeError (FloatingPointError for non-finite results)
    match: str        # regex the message must contain: it names the argument / layer


DATA, OUT, FIT, OPT, LAYER, MODEL, COMPOSE = (
    "Data given to fit / evaluate / predict / forward_backward",
    "Results that would be NaN or infinite (FloatingPointError, never a silent NaN)",
    "Arguments of fit / evaluate / predict, and callbacks",
    "Optimizer hyper-parameters",
    "Layer arguments",
    "Sequential arguments",
    "Composition (raised at build, naming position, class and shapes)",
)
STATE = "State dicts (load_state_dict)"

CASES = [
    Case(DATA, "model.fit(np.zeros((6, 3, 8, 8)), y)", ValueError,
         r"X has shape \(6, 3, 8, 8\).*expects \(N, 1, 8, 8\)"),
    Case(DATA, "model.fit(X[:, :, :7, :7], y)", ValueError, r"X has shape \(6, 1, 7, 7\)"),
    Case(DATA, "model.fit(X.reshape(6, 64), y)", ValueError,
         r"X has shape \(6, 64\).*flattened images: pass X.reshape\(-1, 1, 8, 8\)"),
    Case(DATA, "model.fit(X.transpose(0, 2, 3, 1), y)", ValueError,
         r"X has shape \(6, 8, 8, 1\).*channels-first: pass X.transpose\(0, 3, 1, 2\)"),
    Case(DATA, "model.predict(X[..., None])", ValueError, r"X has shape \(6, 1, 8, 8, 1\)"),
    Case(DATA, "model.fit(X[:0], y[:0])", ValueError, r"X is empty"),
    Case(DATA, "unbuilt.predict([])", ValueError, r"X is empty"),
    Case(DATA, "unbuilt.fit(np.ones(6), y)", ValueError, r"X must have a batch axis"),
    Case(DATA, "model.fit(np.where(X > 0.5, np.nan, X), y)", ValueError, r"X contains \d+ NaN or infinite"),
    Case(DATA, "model.evaluate(np.full((6, 1, 8, 8), np.inf), y)", ValueError, r"X contains 384 NaN or infinite"),
    Case(DATA, "model.fit(X.astype(np.float64) * 1e300, y)", ValueError, r"after conversion to float32"),
    Case(DATA, "model.fit(np.full((6, 1, 8, 8), 'a'), y)", TypeError, r"X must be a numeric array.*<U1"),
    Case(DATA, "model.fit(X + 1j, y)", TypeError, r"X must be a numeric array.*complex"),
    Case(DATA, "model.predict(None)", TypeError, r"X must be a numeric array, got NoneType"),
    Case(DATA, "model.fit([[0.0, 1.0], [2.0]], [0, 1])", ValueError, r"X could not be made into an array"),
    Case(DATA, "model.fit(X, y + 0.5)", TypeError, r"y must hold integer class labels.*non-integer values such as 0.5"),
    Case(DATA, "model.fit(X, np.where(y > 0, np.nan, 0))", TypeError, r"y must hold integer class labels.*nan"),
    Case(DATA, "model.fit(X, np.array(list('abcabc')))", TypeError, r"y must hold integer class labels.*LabelEncoder"),
    Case(DATA, "model.fit(X, y + 1)", ValueError, r"y holds labels in \[1, 3\].*3 classes"),
    Case(DATA, "model.fit(X, y - 1)", ValueError, r"y holds labels in \[-1, 1\]"),
    Case(DATA, "model.fit(X, y * 1e30)", ValueError, r"y holds labels in \[0, 2e\+30\], but the model has 3 classes"),
    Case(DATA, "model.fit(np.ma.masked_greater(X, 0.9), y)", ValueError,
         r"X is a masked array with \d+ masked value\(s\); minidl does not skip them: fill them \(X.filled"),
    Case(DATA, "model.fit(X, np.ma.masked_equal(y, 2))", ValueError, r"y is a masked array with 2 masked value"),
    Case(DATA, "model.fit(X, y[:5])", ValueError, r"y must have shape \(6,\) to match X, got \(5,\)"),
    Case(DATA, "model.fit(X, np.eye(3)[y])", ValueError, r"one-hot labels\? pass y.argmax"),
    Case(DATA, "model.evaluate(X, y + 3)", ValueError, r"y holds labels in \[3, 5\]"),
    Case(DATA, "model.fit(X, y, validation_data=(X[:, :, :4], y))", ValueError,
         r"validation_data\[0\] has shape \(6, 1, 4, 8\)"),
    Case(DATA, "model.fit(X, y, validation_data=(X, y + 7))", ValueError, r"validation_data\[1\] holds labels"),
    Case(DATA, "model.forward_backward(X, y + 3)", ValueError, r"y holds labels in \[3, 5\]"),
    Case(DATA, "model.forward_backward(X[:, :, :5], y)", ValueError, r"x has shape \(6, 1, 5, 8\)"),
    Case(OUT, "model.predict_proba(X * np.float32(3e38))", FloatingPointError,
         r"predict_proba: the outputs came out NaN or infinite"),
    Case(OUT, "model.evaluate(X * np.float32(3e38), y)", FloatingPointError, r"evaluate: the loss came out NaN"),
    Case(OUT, "model.forward_backward(X * np.float32(3e38), y)", FloatingPointError,
         r"forward_backward: the loss came out NaN"),
    Case(FIT, "model.fit(X, y, epochs=-1)", ValueError, r"epochs must be >= 0, got -1"),
    Case(FIT, "model.fit(X, y, epochs=2.5)", TypeError, r"epochs must be an int, got 2.5"),
    Case(FIT, "model.fit(X, y, batch_size=0)", ValueError, r"batch_size must be >= 1, got 0"),
    Case(FIT, "model.fit(X, y, batch_size=True)", TypeError, r"batch_size must be an int, got True"),
    Case(FIT, "model.fit(X, y, verbose=3)", ValueError, r"verbose must be 0, 1 or 2, got 3"),
    Case(FIT, "model.fit(X, y, shuffle='no')", TypeError, r"shuffle must be a bool, got 'no'"),
    Case(FIT, "model.fit(X, y, validation_data=X)", ValueError, r"validation_data must be a pair"),
    Case(FIT, "model.fit(X, y, optimizer='adan')", ValueError,
         r"optimizer 'adan' is not a minidl optimizer: pass one of the names \['adam', 'adamw', 'sgd'\]"),
    Case(FIT, "model.fit(X, y, optimizer=0.1)", TypeError,
         r"optimizer must be a minidl Optimizer such as SGD, or one of the names \['adam', 'adamw', 'sgd'\], got 0.1"),
    Case(FIT, "model.fit(X, y, optimizer=SGD(other.parameters()))", ValueError,
         r"the optimizer holds none of this model's parameters"),
    Case(FIT, "model.fit(X, y, callbacks=Callback())", TypeError, r"callbacks must be a list of Callback objects"),
    Case(FIT, "model.fit(X, y, callbacks=[print])", TypeError, r"callbacks\[0\] must be a minidl Callback"),
    Case(FIT, "model.evaluate(X, y, batch_size=0)", ValueError, r"batch_size must be >= 1"),
    Case(FIT, "model.predict(X, batch_size=-2)", ValueError, r"batch_size must be >= 1, got -2"),
    Case(FIT, "Sequential([Flatten(), Dense(3)], input_shape=(4,)).fit(np.ones((2, 4)), [0, 1])", ValueError,
         r"fit needs a loss: pass loss=SoftmaxCE\(\)"),
    Case(FIT, "ModelCheckpoint(3)", TypeError, r"filepath must be a str or os.PathLike, got 3"),
    Case(FIT, "ModelCheckpoint('m.npz', every_n_epochs=0)", ValueError, r"every_n_epochs must be an int >= 1, got 0"),
    Case(FIT, "ModelCheckpoint('m.npz', mode='best')", ValueError, r"mode must be .* got 'best'"),
    Case(FIT, "ModelCheckpoint('m.npz', save_best_only='yes')", TypeError, r"save_best_only must be a bool"),
    Case(OPT, "SGD(model.parameters(), lr=0)", ValueError, r"SGD: lr must be finite and in \(0.0, inf\), got 0.0"),
    Case(OPT, "SGD(model.parameters(), lr=-0.1)", ValueError, r"lr must be .* got -0.1"),
    Case(OPT, "SGD(model.parameters(), lr=float('nan'))", ValueError, r"lr must be finite .* got nan"),
    Case(OPT, "SGD(model.parameters(), lr=float('inf'))", ValueError, r"lr must be finite .* got inf"),
    Case(OPT, "SGD(model.parameters(), lr=10**400)", ValueError,
         r"SGD: lr must be finite and in \(0.0, inf\), got an int of 1329 bits, too large for a float"),
    Case(OPT, "SGD(model.parameters(), lr='0.1')", TypeError, r"lr must be a number, got '0.1'"),
    Case(OPT, "SGD(model.parameters(), momentum=1.0)", ValueError, r"momentum must be finite and in \[0.0, 1.0\)"),
    Case(OPT, "SGD(model.parameters(), momentum=-0.5)", ValueError, r"momentum .* got -0.5"),
    Case(OPT, "SGD(model.parameters(), weight_decay=-1e-4)", ValueError, r"weight_decay .* got -0.0001"),
    Case(OPT, "SGD(model.parameters(), nesterov=True)", ValueError, r"nesterov=True needs momentum > 0"),
    Case(OPT, "SGD(model.parameters(), momentum=0.9, nesterov='yes')", TypeError, r"nesterov must be a bool"),
    Case(OPT, "SGD(model)", TypeError, r"params must be a list of Parameters \(model.parameters\(\)\), got Sequential"),
    Case(OPT, "SGD([])", ValueError, r"empty parameter list"),
    Case(OPT, "SGD(model.parameters() * 2)", ValueError, r"appears more than once"),
    Case(OPT, "SGD(model.layers)", TypeError, r"params must be Parameter objects .* got Conv2D"),
    Case(LAYER, "Conv2D(0)", ValueError, r"Conv2D: filters must be a positive int, got 0"),
    Case(LAYER, "Conv2D(-4)", ValueError, r"filters must be a positive int, got -4"),
    Case(LAYER, "Conv2D(4, kernel_size=0)", ValueError, r"kernel_size must be >= 1, got 0"),
    Case(LAYER, "Conv2D(4, kernel_size=(3, -1))", ValueError, r"kernel_size must be >= 1, got \(3, -1\)"),
    Case(LAYER, "Conv2D(4, kernel_size=2.5)", TypeError, r"kernel_size must be an int or a pair of ints, got 2.5"),
    Case(LAYER, "Conv2D(4, stride=0)", ValueError, r"stride must be >= 1, got 0"),
    Case(LAYER, "Conv2D(4, padding=-1)", ValueError, r"padding must be >= 0, got -1"),
    Case(LAYER, "Conv2D(4, padding='full')", ValueError, r"padding must be .*got 'full'"),
    Case(LAYER, "Conv2D(4, use_bias='no')", TypeError, r"use_bias must be a bool, got 'no'"),
    Case(LAYER, "Dropout(10**400)", ValueError, r"Dropout: rate must be finite and in \[0.0, 1.0\), got an int of 1329 bits"),
    Case(LAYER, "MaxPool2D(0)", ValueError, r"pool_size must be >= 1, got 0"),
    Case(LAYER, "MaxPool2D(2, stride=-1)", ValueError, r"stride must be >= 1, got -1"),
    Case(LAYER, "MaxPool2D(2, padding=2)", ValueError, r"padding must be at most half the pool size"),
    Case(LAYER, "Dense(0)", ValueError, r"Dense: units must be a positive int, got 0"),
    Case(LAYER, "Dense(2.5)", ValueError, r"units must be a positive int, got 2.5"),
    Case(LAYER, "Dense(3, trainable='yes')", TypeError, r"trainable must be a bool, got 'yes'"),
    Case(LAYER, "ReLU(name=3)", TypeError, r"name must be a str, got 3"),
    Case(LAYER, "Dense(3).build((4,), rng=0)", TypeError, r"rng must be a numpy.random.Generator"),
    Case(LAYER, "Dense(3).build((4,), dtype='int32')", TypeError, r"dtype must be a floating type"),
    Case(LAYER, "Dense(3).build((0,))", ValueError, r"input shape must hold positive ints"),
    Case(LAYER, "Dense(3).forward(X.reshape(6, 64))", ValueError, r"Dense is not built"),
    Case(LAYER, "model.layers[4].forward(X.reshape(6, 64))", ValueError,
         r"Dense: expected input of shape \(N, 18\), got \(6, 64\)"),
    Case(MODEL, "Sequential([])", ValueError, r"empty layer list"),
    Case(MODEL, "Sequential(Dense(3))", TypeError, r"layers must be a list of Layer objects"),
    Case(MODEL, "Sequential([Flatten(), 'Dense(3)'])", TypeError, r"item 1 is a str, not a minidl Layer"),
    Case(MODEL, "Sequential([model.layers[3]] * 2)", ValueError, r"the same layer object appears twice"),
    Case(MODEL, "Sequential([Flatten()], dtype='float16')", TypeError,
         r"dtype must be float32 or float64, got 'float16'"),
    Case(MODEL, "Sequential([Flatten()], dtype='floot32')", TypeError,
         r"dtype must be float32 or float64, got 'floot32'"),
    Case(MODEL, "Sequential([Flatten()], seed=-1)", ValueError, r"seed must be >= 0, got -1"),
    Case(MODEL, "Sequential([Flatten()], seed=0.5)", TypeError, r"seed must be an int, got 0.5"),
    Case(MODEL, "Sequential([Flatten()], input_shape=(1, 0, 8))", ValueError, r"input shape must hold positive ints"),
    Case(MODEL, "Sequential([Flatten()], input_shape=(True, 8, 8))", TypeError,
         r"input shape must be a tuple of ints, got \(True, 8, 8\)"),
    Case(MODEL, "Sequential([Flatten()], input_shape=(2**40, 2**40))", ValueError,
         r"input shape \(1099511627776, 1099511627776\) holds 1.21e\+24 values per sample, more than an int64"),
    Case(MODEL, "Sequential([Flatten()], input_shape=(10**400, 1))", ValueError,
         r"input shape \(1000.*0000, 1\) holds about 2\*\*1328 values per sample, more than an int64"),
    Case(MODEL, "Sequential([Flatten()], input_shape=8)", TypeError, r"input shape must be a tuple of ints, got 8"),
    Case(COMPOSE, "Sequential([Conv2D(2, 3), Flatten(), Dense(3)], input_shape=(8, 8, 1))", ValueError,
         r"bigger than its padded input.*channels-first \(C, H, W\): did you mean input_shape=\(1, 8, 8\)"),
    Case(COMPOSE, "Sequential([Conv2D(2, 3), Dense(3), SoftmaxCE()], input_shape=(1, 8, 8))", ValueError,
         r"layer 2 \(SoftmaxCE\) got input shape \(2, 6, 3\).*put a Flatten\(\) and a Dense\(classes\) before it"),
    Case(COMPOSE, "Sequential([Flatten(), Conv2D(2, 3)], input_shape=(1, 8, 8))", ValueError,
         r"layer 1 \(Conv2D\) got input shape \(64,\).*expects images"),
    Case(COMPOSE, "Sequential([Flatten(), MaxPool2D(2)], input_shape=(1, 8, 8))", ValueError,
         r"layer 1 \(MaxPool2D\) got input shape \(64,\)"),
    Case(COMPOSE, "Sequential([Flatten(), SoftmaxCE(), Dense(3)])", ValueError,
         r"SoftmaxCE must be the last layer, found at position 1 of 3 \(followed by Dense\)"),
    Case(COMPOSE, "Sequential([Flatten(), Dense(3), SoftmaxCE(), SoftmaxCE()])", ValueError,
         r"a model has one loss, found one at each of positions \[2, 3\]"),
    Case(COMPOSE, "Sequential([Conv2D(2, 3), SoftmaxCE()], input_shape=(1, 8, 8))", ValueError,
         r"layer 1 \(SoftmaxCE\) got input shape \(2, 6, 6\).*class scores"),
    Case(COMPOSE, "Sequential([Conv2D(2, 5), MaxPool2D(2), Conv2D(2, 3)], input_shape=(1, 8, 8))", ValueError,
         r"layer 2 \(Conv2D\) got input shape \(2, 2, 2\).*kernel \(3, 3\) is bigger than its padded input"),
    Case(COMPOSE, "Sequential([MaxPool2D(5)], input_shape=(1, 4, 4))", ValueError,
         r"layer 0 \(MaxPool2D\) got input shape \(1, 4, 4\).*pool window \(5, 5\) is bigger"),
    Case(COMPOSE, "Sequential([Conv2D(2, 3, stride=4)], input_shape=(1, 2, 2))", ValueError,
         r"kernel \(3, 3\) is bigger than its padded input \(2, 2\)"),
]

CASES += [
    Case(STATE, "model.load_state_dict({**model.state_dict(), 'extra': np.zeros(1)})", ValueError,
         r"the state does not fit Sequential: missing key\(s\) \[\], unexpected key\(s\) \['extra'\]"),
    Case(STATE, "model.load_state_dict({k: v for k, v in model.state_dict().items() if k != '4.bias'})", ValueError,
         r"missing key\(s\) \['4.bias'\], unexpected key\(s\) \[\] \(strict=False loads the keys that match\)"),
    Case(STATE, "model.load_state_dict({k: v * np.nan for k, v in model.state_dict().items()})", ValueError,
         r"'0.weight' holds 18 NaN or infinite value\(s\) of 18; such weights only give NaN outputs"),
    Case(STATE, "model.load_state_dict({**model.state_dict(), '0.weight': np.zeros((9, 9))})", ValueError,
         r"'0.weight' has shape \(2, 1, 3, 3\), the state has \(9, 9\)"),
]

CLI_CASES = [
    ["digits", "--epochs", "0"],
    ["digits", "--epochs", "ten"],
    ["digits", "--batch-size", "-4"],
    ["digits", "--lr", "0"],
    ["digits", "--lr", "nan"],
    ["digits", "--momentum", "1"],
    ["digits", "--seed", "-3"],
    ["digits", "--preset", "resnet"],
    ["digits", "--verbose", "5"],
    ["digits", "--optimizer", "adam", "--momentum", "0.5"],
    ["digits", "--preset", "digits_cnn", "--faithful"],
    ["digits", "--bogus"],
    ["train"],
    [],
]


def _case_id(case: Case) -> str:
    return re.sub(r"\W+", "_", case.code)[:60]


def run_case(case: Case) -> BaseException:
    """Evaluate the case's code and return the exception it raised (or fail)."""
    with pytest.raises(case.error) as info, np.errstate(all="ignore"):
        eval(case.code, namespace())  # noqa: S307 - our own table of cases
    assert type(info.value) is case.error, f"{case.code} raised a {type(info.value).__name__}"
    return info.value


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``minidl ARGV``: its exit status, its stderr and the last line of stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, err.getvalue(), err.getvalue().strip().splitlines()[-1]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input_raises_a_clear_error(case):
    message = str(run_case(case))
    assert re.search(case.match, message), f"{case.code}: message {message!r} does not match {case.match!r}"


@pytest.mark.parametrize("argv", CLI_CASES, ids=lambda argv: " ".join(argv) or "no-args")
def test_cli_rejects_bad_options_with_usage_and_status_2(argv, capsys):
    status, err, last = run_cli(argv)
    assert status == 2
    assert err.startswith("usage: minidl") and last.startswith("minidl") and "error:" in last
    assert "Traceback" not in err


def render_doc() -> str:
    """docs/robustness.md, from CASES and CLI_CASES (run by tests/gen_robustness_doc.py)."""
    lines = [
        "# Robustness: bad input, diverging losses, interrupted runs, reproducibility",
        "",
        "<!-- GENERATED by `python tests/gen_robustness_doc.py` from tests/test_robustness.py; do not edit. -->",
        "",
        "## Bad input gets one clear error, raised before any work",
        "",
        "Every row below is a case of `tests/test_robustness.py`, run by the test suite; the message column is",
        "what minidl raises today. In the code, `model` is the blog's CNN built for `(1, 8, 8)` images with 3",
        "classes (`other` another one), `unbuilt` the same without `input_shape`, `X` six float32 images",
        "`(6, 1, 8, 8)`, `y` labels 0..2.",
        "",
        "Not errors, on purpose: integer and boolean image arrays are converted to the model's dtype; images",
        "shaped `(N, H, W)` are accepted by single-channel models (built or not); float labels holding whole",
        "numbers and boolean labels are converted to class indices.",
    ]
    section = None
    for case in CASES:
        if case.section != section:
            section = case.section
            lines += ["", f"### {section}", "", "| Code | Raises | Message |", "|---|---|---|"]
        message = str(run_case(case)).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{case.code.replace('|', chr(92) + '|')}` | {case.error.__name__} | {message} |")
    lines += ["", "### The command line (exit status 2, the usage and one error line, never a traceback)", "",
              "| Command | Status | Last line of stderr |", "|---|---|---|"]
    for argv in CLI_CASES:
        status, _, last = run_cli(argv)
        lines.append(f"| `{' '.join(['minidl', *argv])}` | {status} | {last} |")
    from test_download import GUIDE as DOWNLOADS_GUIDE

    lines += ["", *GUIDE_TEXT.strip("\n").splitlines(), "", *DOWNLOADS_GUIDE.strip("\n").splitlines(), ""]
    return "\n".join(lines)


GUIDE_TEXT = """
## Training never loses work

- **NaN or infinite loss.** `fit` checks every step's loss, and the sum of squares of the gradients,
  *before* the optimizer applies the step. If either is NaN or infinite it raises
  `minidl.guard.NonFiniteLossError` (a `FloatingPointError`) naming the epoch, the step and the last
  finite loss, with a hint to lower the learning rate. The poisoned update is never applied, so the model
  keeps the weights of the last finite step; nothing is copied per step. `error.history` (and
  `model.history`) hold the completed epochs; callbacks' `on_train_end` runs before the error propagates
  (so `EarlyStopping(restore_best_weights=True)` still restores). `minidl digits` prints the message and
  exits with status 1.
  The one case these checks cannot see before it happens is an update that overflows although the
  loss and gradients were finite (an enormous learning rate or weight decay); it is caught at the next
  step or at the end of the epoch, and the weights are restored from the start of that epoch (the one
  copy `fit` keeps per epoch); the message says so. After a stop, make a new optimizer before training
  on: its momentum may hold the bad values.
- **Ctrl-C.** While `fit` runs on the main thread, Ctrl-C (SIGINT) only raises a flag: the step in
  flight finishes and training stops at that step boundary, so no update is ever half-applied. `fit`
  then returns normally (after `on_train_end`) with the history of the completed epochs and
  `history.interrupted == True`; the model holds the weights of the last completed step, including the
  steps of the interrupted epoch, and can predict, be saved, or `fit` again. A second Ctrl-C stops at
  once: between updates it is treated the same way; inside `optimizer.step()`, where the update may be
  half-applied, `fit` runs `on_train_end` and lets the `KeyboardInterrupt` propagate rather than
  claim consistent weights. A `KeyboardInterrupt` raised by code (a callback, another thread's
  handler) follows the same rule.

- **Checkpoints.** `ModelCheckpoint(filepath, monitor="val_loss", save_best_only=False, mode="auto",
  every_n_epochs=1)` (in `minidl.callbacks`) saves the model with the atomic `model.save` at the end
  of every N-th epoch, or only when `monitor` improved. `filepath` may use `{epoch}` and the epoch's
  logs (`"ckpt-{epoch:03d}-{val_loss:.3f}.npz"`). A process killed at any moment leaves only complete
  checkpoints (a test SIGKILLs a training process and resumes from its last one) and loses at most N
  epochs. Resume with `model = minidl.load(path)` and `model.fit(...)`: the file holds the weights
  (bit-identical to an uninterrupted run at that epoch), not the optimizer's momentum nor the shuffling
  stream, so the resumed epochs are not bit-identical to an uninterrupted run's.

## Data files, users' own data, saved states, pictures and the first minute (issue 21)

Each case below has its test (`file::test`); each failed on the code before it was fixed.

- **IDX headers whose sizes overflow int64** (`65536⁴` wrapped to 0, `(2³²−1)²` to a negative size): the
  size is computed in Python integers and the `DataFormatError` names the file and the true size
  (`test_own_data.py::test_idx_dimensions_that_overflow_int64_are_a_format_error_naming_the_file`).
- **`minidl train mnist` over such a cached file, or one holding zero images**: one `minidl: error:` line
  naming the file, exit status 1, no traceback; the loaders refuse an empty split
  (`test_own_data.py::test_train_mnist_over_a_cached_file_with_overflowing_or_zero_images_is_one_error_line`).
- **Your own copy of a data set**: `load_mnist(path=DIR)` (likewise `load_fashion_mnist`, `load_cifar10`) and
  `minidl train DATASET --trust-local` (which reads `<data-dir>/<data set>/`) use files that are not the
  published ones, gzip-compressed or not, checking format, image size, counts and label range instead of
  the digests, and say so on stderr (`test_own_data.py::test_load_mnist_path_reads_your_own_files_checks_them_and_says_so`,
  `::test_your_own_files_are_checked_for_format_sizes_and_label_range`,
  `::test_your_own_copy_missing_a_file_names_both_accepted_names`,
  `::test_no_download_over_your_own_copy_says_what_to_do_offline_then_trust_local_trains`).
- **Under `download=False` / `--no-download`** every message says what to do offline (copy the published
  files to the listed paths, or `--trust-local` / `path=` for your own copy), never "delete it to download it
  again" (`test_own_data.py::test_no_download_with_nothing_cached_says_where_to_copy_the_files`,
  `::test_a_malformed_cached_file_under_no_download_is_not_told_to_download_again`,
  `test_first_hour.py::test_the_command_line_says_no_download_not_download_false`).
- **Your own arrays**: `load_from_arrays` and `load_npz` (Keras's `x_train`, `y_train`, `x_test`, `y_test`,
  `allow_pickle=False`) check shapes, dtypes and labels, naming the argument or the file
  (`test_own_data.py::test_load_npz_reads_keras_mnist_npz_layout`,
  `::test_load_npz_refuses_missing_arrays_pickles_and_single_arrays`, `::test_load_from_arrays_shapes_scales_and_checks`).
- **A state value that overflows the model's dtype** (`1e300` from a float64 file into a float32 weight or
  BatchNorm `running_var`): `load_weights` and `load_state_dict` refuse it naming the key, with no
  RuntimeWarning and nothing written, instead of storing `inf` (one check, `minidl.arguments.as_state_value`)
  (`test_saving_bounds.py::test_a_float64_value_that_overflows_a_float32_model_is_refused_naming_the_key`).
- **`save` never writes what `load` refuses**: a model nested 22 containers deep (its header deeper than
  `load`'s 64 levels), more than `MAX_LAYERS` layers, a header over `MAX_HEADER_BYTES` or a state dtype `load`
  does not read is refused at save time, and no file is left
  (`test_saving_bounds.py::test_save_refuses_a_model_nested_deeper_than_load_reads`,
  `::test_every_nesting_save_writes_load_reads`).
- **`plot.confusion_matrix` / `plot.misclassified` with labels outside the model's classes** (12, −1): a
  `ValueError` naming the label and its index; non-integer labels a `TypeError`
  (`test_first_hour.py::test_plot_labels_outside_the_classes_are_an_error_naming_the_label`).
- **Ctrl-C in the first half second of `python -m minidl`**: SIGINT is held from the first line of
  `minidl/__init__.py` (when run as `python -m minidl`; `minidl.cli.main` holds it too) until the
  command's modules are imported, then raised where it is a plain `KeyboardInterrupt`: one line
  `minidl: interrupted`, status 130, at every moment of start-up
  (`test_first_hour.py::test_ctrl_c_while_a_real_module_is_imported_is_one_line_and_status_130`, with the
  SIGINT inside the import of `datetime` that NumPy's C start-up makes,
  `::test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_status_130`, ten delays from 0 to 0.5 s).
- **Pictures**: `misclassified.png` without the empty band above the digits and with a margin below them
  (`test_first_hour.py::test_misclassified_is_laid_out_tightly`), the history legend's last values with the
  same decimals (`::test_history_legend_quotes_the_last_values_with_the_same_decimals`), the recall
  column's colours spanning the recalls' own range so that 0.93 and 1.00 differ
  (`::test_confusion_matrix_recall_colours_tell_093_from_100`).
- **`CNNClassifier`'s defaults**: 5-fold `cross_val_score` on `load_digits()` 0.962 (was 0.931)
  (`test_first_hour.py::test_cnn_classifier_defaults_score_at_least_0_95_in_cross_validation`).

## Batches, memory maps, threads and silent non-learning (issue 21)

Each case below has its test (`file::test`); each failed on the code before it was fixed.

- **A bad batch from a generator shared over the epochs** (`steps_per_epoch`): from the second epoch on the
  `ValueError` names the epoch, the step and the iterator's item, `X batch 3 (epoch 2, step 4, item 14 of the
  iterator): ...`, not just `X batch 3`
  (`test_sources.py::test_a_bad_batch_of_a_generator_shared_over_epochs_names_the_epoch_step_and_item`).
- **A memory-mapped `X` whose file was truncated after `np.load`**: before each batch is read (and when `fit`
  starts) the file's size is compared with the map's offset + size (one `os.stat`); a short file is an
  `OSError` naming the file, its size and the size the map needs, where reading it killed the process with
  SIGBUS (`test_sources.py::test_a_memmapped_file_truncated_after_load_is_an_error_naming_the_file_not_sigbus`,
  in a subprocess).
- **`batch_size=7` with an iterable of batches**: its batches are used as given, so `fit`, `evaluate`,
  `predict` and `predict_proba` refuse an explicitly passed `batch_size` with a `ValueError` saying so (as
  Keras does for generators), instead of ignoring it; left out, it is 32 for `fit` and 256 for the others
  (`test_sources.py::test_an_explicit_batch_size_with_an_iterable_of_batches_is_refused`).
- **Channels-last habits**: `input_shape=(8, 8, 1)` for a convolutional model adds to the layer's error that
  minidl is channels-first and suggests `input_shape=(1, 8, 8)`; `X` of shape `(N, 8, 8, 1)` suggests
  `X.transpose(0, 3, 1, 2)` and flat `(N, 64)` suggests `X.reshape(-1, 1, 8, 8)` (the table above:
  `model.fit(X.transpose(0, 2, 3, 1), y)`, `model.fit(X.reshape(6, 64), y)`, `input_shape=(8, 8, 1)`).
- **`optimizer="adam"`**: `fit` takes the names of `minidl.recipes.OPTIMIZERS` (`"sgd"`, `"adam"`, `"adamw"`,
  any case) as Keras does, making that optimizer with its default settings; an unknown name is a `ValueError`
  listing them (`test_robustness.py::test_fit_takes_the_optimizer_names_keras_takes_with_their_default_settings`,
  and `model.fit(X, y, optimizer='adan')` above).
- **Silent non-learning** (`SGD(lr=10)`, `Adam(lr=10)` trained to chance without a word): from the fifth
  epoch on, `fit` gives one `minidl.fit_checks.NotLearningWarning` (a `UserWarning`, also importable from `minidl.training`) when the training loss is
  still at chance level (above 0.97 ln K for a `SoftmaxCE` over K classes) or has not fallen below the first
  epoch's, naming the likely causes (the learning rate, with its value, and unscaled inputs). It is the
  scikit-learn wrappers' criterion, one function (`minidl.training.not_learning`); the wrappers keep their
  `ConvergenceWarning` over their whole `loss_curve_` and do not repeat `fit`'s
  (`test_robustness.py::test_fit_warns_once_when_the_training_loss_stays_at_chance`).
- **Raw pixels** given to an image model (`(C, H, W)` inputs) whose first layer does not normalize them:
  integers above 1 (raw `uint8` 0..16 or 0..255) or floats above 10 get one `UserWarning` from `fit` naming the
  largest value and the dtype, and saying to scale them to [0, 1] or standardize them
  (`test_robustness.py::test_fit_warns_on_integer_or_unscaled_pixels_for_an_image_model`).
- **Two models fit at the same time in two Python threads** (after a `predict` in the main thread) trained to
  other weights than one after the other: OpenBLAS ignores a thread count set outside the main thread once its
  threads have run, so the worker's pin to one BLAS thread fails (minidl warns, `RuntimeWarning`). The promise
  of the same bits at any thread count is narrowed in docs/benchmarks.md ("Threads") to the main thread, with
  the reason and the two ways that keep it in other threads: `OPENBLAS_NUM_THREADS=1`, or
  `threadpoolctl.threadpool_limits(1, user_api="blas")` opened in the main thread; minidl does not pin BLAS for
  the whole process, which would take NumPy's threads from the rest of the program
  (`test_robustness.py::test_fits_in_two_threads_keep_the_bits_where_blas_is_pinned_in_the_main_thread`; it
  tests the documented ways and passes on the old code too: the change is the docs).

## Reproducible

Same seed, data and arguments give bit-identical weights, history and predictions, in one process
and across processes (`tests/test_reproducibility.py`). minidl draws every random number from
`numpy.random.Generator`s seeded from the model's `seed`; a test replaces all of NumPy's global
random functions with ones that raise, and building, training and predicting still work.

## Fuzzing

`tests/test_fuzz.py` builds random layer stacks with random hyper-parameters, input shapes and
dtypes: each either trains one step (finite loss, parameters changed) or raises `ValueError` /
`TypeError` with a message, or stops with `NonFiniteLossError` with finite weights kept. The default
profile runs a bounded number of examples; `pytest tests/test_fuzz.py --hypothesis-profile deep`
runs many more.
"""


def _comparable(doc: str) -> list[str]:
    # argparse's quoting of choices changed in Python 3.12.8; the CLI rows compare without quotes.
    return [line.replace("'", "") if line.startswith("| `minidl") else line for line in doc.splitlines()]


def test_robustness_doc_is_up_to_date():
    assert DOC.exists(), "docs/robustness.md is missing: run python tests/gen_robustness_doc.py"
    assert _comparable(DOC.read_text()) == _comparable(render_doc()), \
        "docs/robustness.md is stale: run python tests/gen_robustness_doc.py"


def test_labels_beyond_int64_are_refused_without_a_numpy_warning():
    """The case table runs under ``np.errstate(all="ignore")``; here NumPy's cast warning would be an error."""
    ns = namespace()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for labels, quoted in ((ns["y"] * 1e30, r"\[0, 2e\+30\]"), (-ns["y"] * 1e30 - 1, r"\[-2e\+30, -1\]")):
            with pytest.raises(ValueError, match=rf"y holds labels in {quoted}, but the model has 3 classes"):
                ns["model"].fit(ns["X"], labels)


# -- conversions that are not errors ------------------------------------------------------------
@pytest.mark.parametrize("convert", [lambda X: (X * 16).astype(np.int64), lambda X: X > 0.5, lambda X: X[:, 0]],
                         ids=["int-images", "bool-images", "NHW-images"])
def test_integer_boolean_and_nhw_images_are_converted(convert):
    X, y = make_data()
    reference = make_model()
    expected = reference.predict_proba(np.asarray(convert(X), dtype=np.float32).reshape(X.shape))
    model = make_model()
    np.testing.assert_array_equal(model.predict_proba(convert(X)), expected)
    history = model.fit(convert(X), y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history["loss"][0])
    assert np.isfinite(model.evaluate(convert(X), y)["loss"])


def test_nhw_images_build_an_unbuilt_single_channel_model_like_input_shape_would():
    X, y = make_data()
    model = make_model(input_shape=None)
    model.fit(X[:, 0], y, epochs=1, verbose=0, shuffle=False)
    assert model.input_shape == (1, 8, 8)
    direct = make_model()
    direct.fit(X, y, epochs=1, verbose=0, shuffle=False)
    for name, value in direct.state_dict().items():  # the failed (8, 8) build drew no random numbers
        np.testing.assert_array_equal(model.state_dict()[name], value)


def test_whole_number_float_and_boolean_labels_are_converted():
    X, y = make_data()
    a, b = make_model(), make_model()
    a.fit(X, y, epochs=1, verbose=0)
    b.fit(X, y.astype(np.float64), epochs=1, verbose=0)
    np.testing.assert_array_equal(a.layers[0].weight.data, b.layers[0].weight.data)
    assert make_model().evaluate(X, y > 0)["loss"] > 0


def test_forward_backward_checks_and_converts_like_fit():
    X, y = make_data()
    loss, logits = make_model().forward_backward((X * 16).astype(np.int32)[:, 0], y)
    assert np.isfinite(loss) and logits.shape == (6, 3)


# -- NaN / inf: stop at the step, keep the last finite weights --------------------------------------
class Snapshots(Callback):
    """Weights after every completed step, in order."""

    def on_train_begin(self, logs=None):
        self.states = [self.model.state_dict()]

    def on_batch_end(self, batch, logs=None):
        self.states.append(self.model.state_dict())

    def on_train_end(self, logs=None):
        self.ended = True


def assert_weights_equal(model: Sequential, state: dict[str, np.ndarray]) -> None:
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)


def test_diverging_loss_stops_with_a_clear_error_and_keeps_the_last_finite_weights():
    X, _, y, _ = load_digits()
    model = blog_cnn(seed=0)
    snaps = Snapshots()
    with pytest.raises(NonFiniteLossError) as info, np.errstate(all="ignore"):
        model.fit(X[:64], y[:64], optimizer=SGD(model.parameters(), lr=1e20), epochs=3, batch_size=4,
                  shuffle=False, verbose=0, callbacks=[snaps])
    err = info.value
    assert isinstance(err, FloatingPointError)
    message = str(err)
    assert re.search(r"the loss became (nan|inf) at epoch 1, step 2; the last finite loss was \d", message)
    assert "lower learning rate (lr=1e+20)" in message and "keeps the weights of the last finite step" in message
    assert (err.epoch, err.step) == (0, 1) and np.isfinite(err.last_finite_loss)
    assert len(snaps.states) == 2  # the start and step 1: step 2's update was never applied
    assert_weights_equal(model, snaps.states[-1])
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    assert err.history is model.history


class InfFromCall(Layer):
    """Identity layer whose training forward outputs +inf from its ``at``-th call on (a loss that becomes NaN)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x, training=False):
        if training:
            self.calls += 1
            if self.calls >= self.at:
                return np.full_like(x, np.inf)
        return x

    def backward(self, grad_out):
        return grad_out


def test_nan_loss_mid_training_names_epoch_step_and_last_loss_and_keeps_completed_epochs():
    X, y = make_data(n=12)
    model = Sequential([Conv2D(2, 3), InfFromCall(at=8), Flatten(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0)
    snaps = Snapshots()
    losses = []
    with pytest.raises(NonFiniteLossError) as info, np.errstate(all="ignore"):
        model.fit(X, y, epochs=5, batch_size=4, verbose=0, callbacks=[snaps, RecordLosses(losses)])
    err = info.value
    assert (err.epoch, err.step) == (2, 1)  # call 8 = epoch 3 (of 3 steps each), step 2
    assert "at epoch 3, step 2" in str(err) and f"last finite loss was {losses[-1]:.6g}" in str(err)
    assert err.last_finite_loss == losses[-1] and not np.isfinite(err.loss)
    assert_weights_equal(model, snaps.states[-1])
    assert len(snaps.states) == 1 + 7 and len(err.history["loss"]) == 2
    assert snaps.ended  # callbacks were told training ended


class RecordLosses(Callback):
    def __init__(self, out: list) -> None:
        self.out = out

    def on_batch_end(self, batch, logs=None):
        self.out.append(logs["loss"])


class NaNGradient(Layer):
    """Identity forward; backward returns NaN from the ``poison_at``-th call on (a finite loss, bad gradients)."""

    def __init__(self, poison_at: int) -> None:
        super().__init__()
        self.poison_at, self.calls = poison_at, 0

    def forward(self, x, training=False):
        return x

    def backward(self, grad_out):
        self.calls += 1
        return grad_out * np.nan if self.calls >= self.poison_at else grad_out


def test_finite_loss_with_non_finite_gradients_stops_before_the_update():
    X, y = make_data(n=12)
    model = Sequential([Conv2D(2, 3), ReLU(), NaNGradient(poison_at=3), Flatten(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0)
    snaps = Snapshots()
    with pytest.raises(NonFiniteLossError, match=r"gradients became non-finite .* at epoch 1, step 3"):
        model.fit(X, y, epochs=1, batch_size=4, shuffle=False, verbose=0, callbacks=[snaps])
    assert len(snaps.states) == 3  # the start, then steps 1 and 2
    assert_weights_equal(model, snaps.states[-1])
    assert np.isfinite(model.layers[0].weight.data).all()


class EpochStarts(Callback):
    def on_train_begin(self, logs=None):
        self.states = []

    def on_epoch_begin(self, epoch, logs=None):
        self.states.append(self.model.state_dict())


@pytest.mark.parametrize("n", [12, 8], ids=["caught-at-next-step", "caught-at-epoch-end"])
def test_an_update_that_overflows_from_finite_gradients_restores_the_epoch_start_weights(n):
    X, _ = make_data(n=n)
    # One class: the loss and its gradients are exactly 0, so only weight decay x lr=1e30 moves the weights,
    # by a factor of -1e27 per step: the second update overflows float32 while everything checked was finite.
    model = Sequential([Flatten(), Dense(1), SoftmaxCE()], input_shape=(1, 8, 8), seed=0)
    starts = EpochStarts()
    with pytest.raises(NonFiniteLossError, match=r"an update overflowed although its loss and gradients were "
                       r"finite, so the weights were restored to those at the start of epoch 1"), \
            np.errstate(all="ignore"):
        model.fit(X, np.zeros(n, dtype=int), optimizer=SGD(model.parameters(), lr=1e30, weight_decay=1e-3),
                  epochs=3, batch_size=4, verbose=0, callbacks=[starts])
    assert len(starts.states) == 1
    assert_weights_equal(model, starts.states[0])


def test_a_nan_stop_also_restores_running_statistics_the_failing_forward_pass_poisoned():
    X, y = make_data(n=12)
    model = Sequential([Conv2D(2, 3), InfFromCall(at=5), BatchNorm2D(), Flatten(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0)
    starts, snaps = EpochStarts(), Snapshots()
    with pytest.raises(NonFiniteLossError, match=r"at epoch 2, step 2.*keeps the weights of the last finite step .*; "
                       r"the buffers \(running statistics\) were restored to those at the start of epoch 2"), \
            np.errstate(all="ignore"):
        model.fit(X, y, epochs=3, batch_size=4, verbose=0, callbacks=[starts, snaps])
    for name, buffer in model.named_buffers().items():
        np.testing.assert_array_equal(buffer.data, starts.states[1][name])
    for name, p in model.named_parameters().items():
        np.testing.assert_array_equal(p.data, snaps.states[-1][name])
    assert np.isfinite(model.predict_proba(X)).all()


def test_cli_reports_divergence_with_status_1_and_no_traceback(capsys):
    with np.errstate(all="ignore"):
        status = cli.main(["digits", "--lr", "1e30", "--epochs", "1", "--verbose", "0"])
    err = capsys.readouterr().err
    assert status == 1
    assert "minidl: error: fit: the loss became" in err and "lower learning rate" in err
    assert "Traceback" not in err


# -- Ctrl-C: stop after the step in flight, keep its weights, return the history ----------------------
class InterruptAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_keyboard_interrupt_from_a_callback_returns_history_and_keeps_the_last_step(capsys):
    X, y = make_data(n=12)
    model = make_model()
    snaps = Snapshots()
    history = model.fit(X, y, epochs=5, batch_size=4, verbose=2, callbacks=[snaps, InterruptAt(1, 1)])
    assert history.interrupted and model.history is history
    assert len(history["loss"]) == 1  # epoch 0 completed; epoch 1 was interrupted after its step 1
    assert len(snaps.states) == 1 + 3 + 2
    assert_weights_equal(model, snaps.states[-1])
    assert "interrupted" in capsys.readouterr().out
    # The model is usable: it predicts and trains on.
    assert model.predict(X).shape == (12,)
    assert not model.fit(X, y, epochs=1, verbose=0).interrupted


class SigintDuringForward(Layer):
    """Identity layer that sends the process a real SIGINT during the forward pass of chosen training steps."""

    def __init__(self, at_calls: tuple[int, ...], times: int = 1) -> None:
        super().__init__()
        self.at_calls, self.times, self.calls = at_calls, times, 0

    def forward(self, x, training=False):
        if training:
            self.calls += 1
            if self.calls in self.at_calls:
                for _ in range(self.times):
                    os.kill(os.getpid(), signal.SIGINT)
        return x

    def backward(self, grad_out):
        return grad_out


def counting_sgd(model):
    opt = SGD(model.parameters(), lr=0.1)
    opt.steps = 0
    step = opt.step

    def counted():
        step()
        opt.steps += 1
    opt.step = counted
    return opt


@pytest.mark.skipif(os.name == "nt" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="needs POSIX signals and Python's own SIGINT handler")
def test_ctrl_c_mid_step_finishes_that_step_then_stops():
    X, y = make_data(n=12)
    model = Sequential([SigintDuringForward(at_calls=(5,)), Conv2D(2, 3), Flatten(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0)
    snaps = Snapshots()
    opt = counting_sgd(model)
    history = model.fit(X, y, optimizer=opt, epochs=4, batch_size=4, verbose=0, callbacks=[snaps])
    assert history.interrupted and len(history["loss"]) == 1
    assert opt.steps == 5  # the interrupted step 5 was completed, not dropped half-way
    assert_weights_equal(model, snaps.states[5])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit restored the handler


@pytest.mark.skipif(os.name == "nt" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="needs POSIX signals and Python's own SIGINT handler")
def test_a_second_ctrl_c_stops_at_once():
    X, y = make_data(n=12)
    model = Sequential([SigintDuringForward(at_calls=(2,), times=2), Flatten(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0)
    snaps = Snapshots()
    opt = counting_sgd(model)
    history = model.fit(X, y, optimizer=opt, epochs=2, batch_size=4, verbose=0, callbacks=[snaps])
    assert history.interrupted and opt.steps == 1
    assert_weights_equal(model, snaps.states[1])


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="needs POSIX signals")
def test_ctrl_c_on_the_command_line_stops_training_and_still_reports(tmp_path):
    """A real SIGINT to a real `minidl digits` process: it stops after a step, evaluates, exits 0."""
    import subprocess
    import sys

    # Restore the default SIGINT action in the child: under nohup or `cmd &` it would inherit "ignore".
    proc = subprocess.Popen([sys.executable, "-u", "-m", "minidl", "digits", "--epochs", "500", "--verbose", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:  # wait until training is under way
        if line.startswith("Epoch 2/"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "fit: interrupted" in out and "test accuracy:" in out
    assert re.search(r"train: 1437 images, \d+ epochs in .*, interrupted", out) and "500 epochs" not in out
    assert "Traceback" not in err


# -- checkpointing: ModelCheckpoint on the atomic model.save -------------------------------------------
def test_model_checkpoint_errors_before_training(tmp_path):
    X, y = make_data()
    model = make_model()
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"directory .* does not exist"):
        model.fit(X, y, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "missing" / "m.npz")])
    assert_weights_equal(model, before)
    with pytest.raises(ValueError, match=r"monitor 'val_loss' is not in the epoch's logs .*pass validation_data"):
        model.fit(X, y, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "m.npz", save_best_only=True)])
    with pytest.raises(ValueError, match=r"cannot fill in filepath .*val_acc"):
        model.fit(X, y, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "m-{val_acc}.npz"))])

class EpochEnds(Callback):
    """Weights at the end of every epoch (listed before the checkpoint, so it sees the same weights)."""

    def on_train_begin(self, logs=None):
        self.states = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.model.state_dict())


def test_model_checkpoint_saves_every_n_epochs_with_the_epoch_in_the_name(tmp_path):
    X, y = make_data(n=12)
    model = make_model()
    ends = EpochEnds()
    ckpt = ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.npz", every_n_epochs=2)
    history = model.fit(X, y, epochs=5, batch_size=4, verbose=0, callbacks=[ends, ckpt])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"ckpt-02-{history['loss'][1]:.3f}.npz", f"ckpt-04-{history['loss'][3]:.3f}.npz"]
    assert ckpt.last_saved == str(tmp_path / names[-1])
    loaded = minidl.load(tmp_path / names[-1])
    assert_weights_equal(loaded, ends.states[3])
    np.testing.assert_array_equal(loaded.predict_proba(X), make_model_with(ends.states[3]).predict_proba(X))


def make_model_with(state):
    model = make_model()
    model.load_state_dict(state)
    return model


def test_model_checkpoint_save_best_only_keeps_the_best_validation_epoch(tmp_path):
    X, y = make_data(n=24)
    model = make_model()
    ends = EpochEnds()
    path = tmp_path / "best.npz"
    ckpt = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    history = model.fit(X[:18], y[:18], epochs=8, batch_size=3, validation_data=(X[18:], y[18:]),
                        optimizer=SGD(model.parameters(), lr=0.5, momentum=0.9), verbose=0, callbacks=[ends, ckpt])
    best = int(np.argmin(history["val_loss"]))
    assert best < len(history["val_loss"]) - 1  # a later, worse epoch must not have overwritten the file
    assert ckpt.best == history["val_loss"][best]
    assert_weights_equal(minidl.load(path), ends.states[best])
    assert [p.name for p in tmp_path.iterdir()] == ["best.npz"]  # no temporary files left behind


TRAIN_SCRIPT = """
import sys
from minidl.callbacks import ModelCheckpoint
from minidl.data import load_digits
from minidl.presets import blog_cnn

X, _, y, _ = load_digits()
model = blog_cnn(seed=7)
model.fit(X, y, epochs=10_000, batch_size=4, verbose=0, shuffle=True,
          callbacks=[ModelCheckpoint(sys.argv[1] + "/ckpt-{epoch:04d}.npz")])
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="needs POSIX signals")
def test_a_killed_training_process_resumes_from_its_last_checkpoint(tmp_path):
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(tmp_path)], stderr=subprocess.PIPE)
    try:
        while len(list(tmp_path.glob("ckpt-*.npz"))) < 3 and proc.poll() is None:
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no cleanup runs, as in a crash or an OOM kill
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    checkpoints = sorted(tmp_path.glob("ckpt-*.npz"))
    assert len(checkpoints) >= 3
    models = [minidl.load(path) for path in checkpoints]  # every file on disk is complete and loads
    last_epoch = int(checkpoints[-1].stem.split("-")[1])
    assert [int(p.stem.split("-")[1]) for p in checkpoints] == list(range(1, last_epoch + 1))

    # The checkpoint holds exactly the weights the same run has after that many epochs (runs are reproducible).
    X, X_test, y, y_test = load_digits()
    reference = blog_cnn(seed=7)
    reference.fit(X, y, epochs=last_epoch, batch_size=4, verbose=0)
    assert_weights_equal(models[-1], reference.state_dict())

    # Resume: load the last checkpoint and train on; nothing of the finished epochs is lost.
    resumed = models[-1]
    start = resumed.evaluate(X_test, y_test)["accuracy"]
    resumed.fit(X, y, epochs=2, batch_size=4, verbose=0)
    assert resumed.evaluate(X_test, y_test)["accuracy"] >= start - 0.05 and start > 0.5


# -- found in review: state left behind by errors --------------------------------------------------


def test_load_state_dict_checks_every_entry_before_writing_any():
    model = Sequential([Flatten(), Dense(4), ReLU(), Dense(3), SoftmaxCE()], input_shape=(1, 2, 2), seed=0)
    before = model.state_dict()
    state = {k: np.zeros_like(v) for k, v in before.items()}
    state["3.weight"] = np.zeros((9, 9))
    with pytest.raises(ValueError, match=r"'3.weight' has shape \(4, 3\), the state has \(9, 9\)"):
        model.load_state_dict(state)
    state["3.weight"], state["3.bias"] = np.zeros((4, 3)), np.array(["a", "b", "c"])
    with pytest.raises(TypeError, match="'3.bias' must be numeric"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the runaway update is the point
def test_the_guard_covers_a_layer_unfrozen_during_fit():
    X, y = make_data(n=32)
    model = Sequential([Conv2D(2, 3, trainable=False), ReLU(), Flatten(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0)
    opt = SGD(model.parameters(), lr=0.01)

    class Unfreeze(Callback):  # fine-tuning: unfreeze the first layer after epoch 1, with a runaway rate
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.layers[0].trainable = True
                opt.lr = 1e300

    with pytest.raises(NonFiniteLossError):
        model.fit(X, y, optimizer=opt, epochs=3, verbose=0, callbacks=[Unfreeze()])
    for name, p in model.named_parameters().items():
        assert np.isfinite(p.data).all(), name


def test_fit_refuses_an_optimizer_that_also_holds_another_models_parameters():
    X, y = make_data(n=8)
    model, other = blog_cnn(num_classes=3, seed=0), blog_cnn(num_classes=3, seed=1)
    with pytest.raises(ValueError, match=r"also holds 4 parameter\(s\) of another model"):
        model.fit(X, y, optimizer=SGD(model.parameters() + other.parameters()), verbose=0)


def test_fit_from_inside_fit_is_refused_and_a_refused_fit_keeps_the_previous_optimizer():
    X, y = make_data(n=8)
    model = blog_cnn(num_classes=3, seed=0)
    first = SGD(model.parameters(), lr=0.01)
    model.fit(X, y, optimizer=first, verbose=0)

    class Nested(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.fit(X, y, verbose=0)

    with pytest.raises(RuntimeError, match="already training"):
        model.fit(X, y, optimizer=first, verbose=0, callbacks=[Nested()])

    class Refuses(Callback):
        def on_train_begin(self, logs=None):
            raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.5), verbose=0, callbacks=[Refuses()])
    assert model.optimizer is first
    model.fit(X, y, verbose=0)  # the model is not stuck in "training"


def test_an_interrupt_inside_the_optimizer_update_propagates_after_on_train_end():
    X, y = make_data(n=8)
    model = blog_cnn(num_classes=3, seed=0)
    opt = SGD(model.parameters(), lr=0.1)
    params, step = opt.params, opt.step

    def half_then_interrupted():  # a forced stop after the first parameter was updated
        params[0].data -= 0.1 * params[0].grad
        raise KeyboardInterrupt

    opt.step = half_then_interrupted
    ended = []

    class Ended(Callback):
        def on_train_end(self, logs=None):
            ended.append(True)

    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, optimizer=opt, epochs=1, batch_size=4, verbose=0, callbacks=[Ended()])
    assert ended == [True]
    opt.step = step
    assert not model.fit(X, y, optimizer=opt, epochs=1, verbose=0).interrupted  # usable again


def test_fit_takes_the_optimizer_names_keras_takes_with_their_default_settings():
    from minidl.optim import Adam, AdamW

    X, y = make_data()
    for name, cls, lr in (("adam", Adam, 1e-3), ("AdamW", AdamW, 1e-3), ("sgd", SGD, 0.01)):
        model = make_model(input_shape=None)  # unbuilt: the optimizer is made once X has built it
        model.fit(X, y, optimizer=name, epochs=2, verbose=0)
        assert type(model.optimizer) is cls and model.optimizer.lr == lr
        assert {id(p) for p in model.optimizer.params} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_fit_warns_once_when_the_training_loss_stays_at_chance(optimizer):
    from minidl import optim
    from minidl.training import NotLearningWarning

    X, _, y, _ = load_digits()
    X, y = X[:200], y[:200]
    model = blog_cnn(seed=0)
    with pytest.warns(NotLearningWarning) as caught:  # new user 2: lr=10 trained to chance without a word
        model.fit(X, y, optimizer=getattr(optim, optimizer)(model.parameters(), lr=10), epochs=7, verbose=0)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert re.search(r"^fit: after 5 epochs the training loss is \d+\.\d{4}, still at chance level \(ln 10 = 2\.3026\)",
                     message), message
    assert "learning rate too large or too small (lr=10)" in message and "unscaled inputs" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model that learns is never warned about
        healthy = blog_cnn(seed=0)
        healthy.fit(X, y, optimizer=SGD(healthy.parameters(), lr=0.02, momentum=0.5), epochs=6, batch_size=4, verbose=0)


def test_fit_warns_on_integer_or_unscaled_pixels_for_an_image_model():
    from minidl.layers import BatchNorm2D

    X, y = make_data()
    raw = (X * 16).astype(np.uint8)  # new user 2: raw uint8 pixels 0..16 were accepted silently
    with pytest.warns(UserWarning, match=r"^fit: X holds values up to 1[56] \(dtype uint8\) for an image model: "
                                         r"unscaled pixels .* scale them to \[0, 1\]"):
        make_model().fit(raw, y, verbose=0)
    with pytest.warns(UserWarning, match=r"X holds values up to 2\d\d[.\d]* \(dtype float32\)"):
        make_model().fit(X * 255, y, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_model().fit(X, y, verbose=0)  # scaled: no warning
        make_model().fit((X > 0.5).astype(np.uint8), y, verbose=0)  # 0/1 integers are scaled
        Sequential([BatchNorm2D(), *make_model().layers], loss=SoftmaxCE(), input_shape=(1, 8, 8)).fit(X * 255, y, verbose=0)


TWO_THREAD_FITS = """
import sys, threading, warnings
import numpy as np
from minidl import Sequential
from minidl.layers import Dense, ReLU, SoftmaxCE
rng = np.random.default_rng(0)
X, y = rng.random((256, 128), dtype=np.float32), rng.integers(0, 10, 256)
make = lambda: Sequential([Dense(128), ReLU(), Dense(10), SoftmaxCE()], input_shape=(128,), seed=0)
weights = lambda m: b"".join(p.data.tobytes() for p in m.parameters())
make().predict(X)  # OpenBLAS's threads have run (issue 21, item 13)
alone = make()
alone.fit(X, y, epochs=2, verbose=0)
models = [make(), make()]
threads = [threading.Thread(target=m.fit, args=(X, y), kwargs=dict(epochs=2, verbose=0)) for m in models]
warnings.simplefilter("error")  # no "BLAS kept 2 threads" either
def run():
    [t.start() for t in threads]
    [t.join() for t in threads]
if sys.argv[1] == "limits":
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="blas"):  # opened in the main thread, around the threads
        run()
else:
    run()
print(all(weights(m) == weights(alone) for m in models))
"""


@pytest.mark.parametrize("pin", ["limits", "environment"])
def test_fits_in_two_threads_keep_the_bits_where_blas_is_pinned_in_the_main_thread(pin):
    """The documented way to the same bits for fits in other threads (docs/benchmarks.md, "Threads")."""
    import subprocess
    import sys

    env = {**os.environ, **({"OPENBLAS_NUM_THREADS": "1"} if pin == "environment" else {})}
    done = subprocess.run([sys.executable, "-c", TWO_THREAD_FITS, pin], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
