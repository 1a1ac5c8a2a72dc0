"""Command line: ``minidl digits`` and ``minidl mnist`` (also ``python -m minidl ...``).

Importing this module imports the standard library only: NumPy, the layers and scikit-learn
load inside :func:`main`, when a command needs them, so ``minidl --help`` is quick and Ctrl-C
at any moment of start-up exits with status 130 and one line, like Ctrl-C anywhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from . import presets

__all__ = ["COMMANDS", "Command", "CommandError", "build_parser", "main", "resolve_recipe", "run"]

#: The recipe's fields that have a command-line option of the same name.
RECIPE_OPTIONS = ("optimizer", "lr", "epochs", "batch_size", "momentum", "schedule")


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "positive")


def _float_in(low: float, high: float, low_open: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value >= high:
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"expected a number in {bracket}{low}, {high}), got {text!r}")
        return value
    return parse


class CommandError(Exception):
    """A command cannot go on (its data cannot be had, ...): ``minidl: error: <message>``, exit status 1."""


class Command(NamedTuple):
    """A command that trains a preset on a data set and reports its test accuracy."""

    presets: str  # the name of the table in minidl.presets its --preset chooses from
    default: str  # the default preset
    data: str  # what it trains on, for the help
    load: Callable[[argparse.Namespace], tuple]  # args -> X_train, X_test, y_train, y_test


def _load_digits(args: argparse.Namespace) -> tuple:
    from .data import load_digits

    return load_digits()


def _load_mnist(args: argparse.Namespace) -> tuple:
    from .datasets import load_mnist
    from .download import DownloadError

    try:
        (X_train, y_train), (X_test, y_test) = load_mnist(args.data_dir, download=not args.no_download,
                                                          verbose=args.verbose > 0)
    except DownloadError as err:  # its message says where to put the files by hand
        raise CommandError(err) from None
    return X_train, X_test, y_train, y_test


#: The training commands: ``minidl NAME --preset P ...``. Each has the training options below.
COMMANDS: dict[str, Command] = {
    "digits": Command("PRESETS", "blog_cnn", "scikit-learn's 8x8 digits (the blog's split)", _load_digits),
    "mnist": Command("MNIST_PRESETS", "lenet", "MNIST's 28x28 digits (60,000 / 10,000; downloaded once, 11 MB)",
                     _load_mnist),
}


def build_parser() -> argparse.ArgumentParser:
    from . import presets  # NumPy and the layers: imported once a command line is parsed

    parser = argparse.ArgumentParser(prog="minidl", description="minidl: a small deep-learning framework in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        table = getattr(presets, command.presets)
        recipes = "\n".join(f"  {preset}: {_describe(presets.RECIPES[preset])}" for preset in table)
        what = f"train a preset CNN on {command.data} and report its test accuracy"
        cmd = sub.add_parser(
            name, help=what, description=f"{what[0].upper()}{what[1:]}. Training options left out come from the "
                                         "preset's recipe.",
            epilog=f"recipes (the defaults of the training options):\n{recipes}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("--preset", choices=sorted(table), default=command.default,
                         help=f"architecture (default: {command.default})")
        _add_training_options(cmd, presets)
        cmd.add_argument("--export", metavar="PATH",
                         help='after training, write the model as an ONNX file (needs pip install "minidl[onnx]")')
    sub.choices["digits"].add_argument(
        "--faithful", action="store_true",
        help="blog_cnn only: the filters stay frozen at their random start; only the dense layer trains",
    )
    mnist = sub.choices["mnist"]
    mnist.add_argument("--data-dir", help="where the files are cached (default: $MINIDL_DATA or ~/.cache/minidl)")
    mnist.add_argument("--no-download", action="store_true", help="never use the network: the files must be cached")
    return parser


def _add_training_options(cmd: argparse.ArgumentParser, presets) -> None:
    """The options every training command has (add new shared options here)."""
    cmd.add_argument("--optimizer", choices=sorted(presets.OPTIMIZERS),
                     help="default: the recipe's; choosing another one without --lr uses its own default lr")
    cmd.add_argument("--lr", type=_float_in(0.0, math.inf, True), help="learning rate (default: the recipe's)")
    cmd.add_argument("--epochs", type=_positive_int, help="passes over the training images (default: the recipe's)")
    cmd.add_argument("--batch-size", type=_positive_int, help="images per optimizer step (default: the recipe's)")
    cmd.add_argument("--momentum", type=_float_in(0.0, 1.0, False), help="SGD only")
    cmd.add_argument("--schedule", choices=presets.SCHEDULES,
                     help="learning-rate schedule: cosine anneals to 0 over the epochs")
    cmd.add_argument("--seed", type=_int_at_least(0, "non-negative"), default=0,
                     help="seeds the weights and the shuffling (default: 0)")
    cmd.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                     help="0: only the two result lines (train time, test accuracy); 1: also the model summary, "
                          "the recipe and a progress bar per epoch; 2: the same with one line per epoch instead "
                          "of the bar (default: 2)")
    cmd.add_argument("--threads", type=_positive_int,
                     help="BLAS threads (default: one per core other processes leave idle; minidl.set_num_threads)")
    cmd.add_argument("--report", metavar="DIR",
                     help="also write DIR/report.md and pictures of the run (history, filters, feature maps, "
                          "confusion matrix, mistakes); needs the plot extra: pip install \"minidl[plot]\"")


def _describe(recipe: presets.Recipe) -> str:
    """The recipe as the options that give it."""
    momentum = f" --momentum {recipe.momentum}" if recipe.optimizer == "sgd" else ""
    return (f"--optimizer {recipe.optimizer} --lr {recipe.lr}{momentum} --epochs {recipe.epochs} "
            f"--batch-size {recipe.batch_size} --schedule {recipe.schedule}")


def resolve_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> presets.Recipe:
    """The preset's recipe with the options the user gave; contradictions are usage errors (exit 2)."""
    from . import presets

    if getattr(args, "faithful", False) and args.preset != "blog_cnn":
        parser.error(f"--faithful applies only to --preset blog_cnn, not {args.preset}")
    if args.export is not None and importlib.util.find_spec("onnx") is None:  # before training, not after
        parser.error('--export needs the onnx package: pip install "minidl[onnx]"')
    recipe = presets.RECIPES[args.preset]
    given = {k: getattr(args, k) for k in RECIPE_OPTIONS if getattr(args, k) is not None}
    optimizer = given.get("optimizer", recipe.optimizer)
    if optimizer != "sgd" and "momentum" in given:
        parser.error(f"--momentum applies only to --optimizer sgd; {args.preset} trains with {optimizer}")
    if optimizer != recipe.optimizer:
        # The recipe's lr and momentum were tuned for its own optimizer.
        given.setdefault("lr", inspect.signature(presets.OPTIMIZERS[optimizer]).parameters["lr"].default)
        given.setdefault("momentum", 0.0)
    return dataclasses.replace(recipe, **given)


def run(args: argparse.Namespace, recipe: presets.Recipe) -> float:
    """Train ``args.preset`` on ``args.command``'s data with ``recipe``; print the results; return the accuracy."""
    from . import presets

    if args.threads is not None:
        from .threads import set_num_threads

        set_num_threads(args.threads)
    X_train, X_test, y_train, y_test = COMMANDS[args.command].load(args)
    build = getattr(presets, COMMANDS[args.command].presets)[args.preset]
    faithful = getattr(args, "faithful", False)
    model = build(seed=args.seed, faithful=True) if faithful else build(seed=args.seed)
    if args.verbose:
        model.summary()
        print(f"recipe: {_describe(recipe)} --seed {args.seed}")
    start = time.perf_counter()
    # With --report, the test split is also measured after each epoch for the history's val_* curves;
    # evaluation runs in inference mode and draws no random numbers, so training is the same.
    history = recipe.fit(model, X_train, y_train, verbose=args.verbose,
                         validation_data=(X_test, y_test) if args.report else None)
    seconds = time.perf_counter() - start
    result = model.evaluate(X_test, y_test)
    epochs = len(history.epoch)  # fewer than the recipe's after Ctrl-C or early stopping
    print(f"train: {len(X_train)} images, {epochs} epochs in {seconds:.2f} s "
          f"({seconds / max(epochs, 1):.3f} s/epoch)" + (", interrupted" if history.interrupted else ""))
    print(f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {len(X_test)} images")
    if args.report:
        from .report import write_report

        written = write_report(args.report, model, history, X_test, y_test, command=args.command_line,
                               preset=args.preset, recipe=f"{_describe(recipe)} --seed {args.seed}", seconds=seconds)
        print(f"report: {written['report.md']} and {len(written) - 1} pictures")
    if args.export is not None:
        from .export import to_onnx

        to_onnx(model, args.export)
        if args.verbose:
            shape = ", ".join(map(str, model.input_shape))
            print(f"exported: {args.export} (ONNX opset 13; input 'input' (N, {shape}), output 'output' probabilities)")
    return result["accuracy"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Bad options exit with status 2 and a usage message (argparse); a diverged run, or data that
    cannot be downloaded, with 1 and one error line; Ctrl-C outside ``fit`` (which stops at a step
    and reports what it has) with 130 and one line.
    """
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("minidl: interrupted", file=sys.stderr)
        return 130


def _run(argv: Sequence[str] | None) -> int:
    from .guard import NonFiniteLossError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m minidl " + shlex.join(sys.argv[1:] if argv is None else argv)
    if getattr(args, "report", None):
        try:
            from . import plot  # noqa: F401  (missing matplotlib is said before training, not after)
        except ImportError as err:
            parser.error(str(err))
    try:
        run(args, resolve_recipe(args, parser))
    except (NonFiniteLossError, CommandError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
