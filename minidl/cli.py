"""Command line: ``minidl train DATASET`` (with ``minidl digits`` and ``minidl mnist`` kept as its
aliases for two of the data sets); also ``python -m minidl ...``.

Importing this module, and building the parser, imports the standard library only (the presets'
names, shapes and recipes come from :mod:`minidl.recipes`): NumPy, the layers, tqdm and scikit-learn
load inside :func:`run`, when a command needs them, so ``minidl --help`` is quick and Ctrl-C at any
moment of start-up exits with status 130 and one line, like Ctrl-C anywhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from . import recipes

__all__ = ["DATASETS", "TEXT_DATASETS", "DataSet", "CommandError", "build_parser", "main", "resolve_recipe", "run",
           "run_text", "run_generate"]

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


class DataSet(NamedTuple):
    """A data set ``minidl train`` trains on: its loader is :data:`minidl.datasets.LOADERS`' of the same name
    (``pydoc-topics``: :func:`minidl.text.load_pydoc_topics`)."""

    shape: tuple[int, ...]  # a sample's: images' (C, H, W) or rows of T token ids (T,); presets of that shape fit
    default: str  # the default preset
    about: str  # what it is, for the help
    downloads: bool  # its files are downloaded (so the command has --data-dir and --no-download)
    samples: str = "images"  # what its samples are called in the output


#: The data sets of ``minidl train DATASET``; each trains with the training options below.
DATASETS: dict[str, DataSet] = {
    "digits": DataSet((1, 8, 8), "blog_cnn", "scikit-learn's 8x8 digits (the blog's split, 1,437 / 360)", False),
    "mnist": DataSet((1, 28, 28), "lenet", "MNIST's 28x28 digits (60,000 / 10,000; downloaded once, 11 MB)", True),
    "fashion-mnist": DataSet((1, 28, 28), "lenet", "Fashion-MNIST's 28x28 clothing images (60,000 / 10,000; "
                             "downloaded once, 30 MB)", True),
    "cifar10": DataSet((3, 32, 32), "cifar_resnet", "CIFAR-10's 32x32 colour photographs (50,000 / 10,000; "
                       "downloaded once, 163 MB)", True),
    "pydoc-topics": DataSet((64,), "text_cnn", "which of 4 pydoc help topics a window of 16-64 characters comes "
                            "from (2,000 / 400 windows; nothing downloaded)", False, "windows"),
}
#: The data sets that are also commands of their own (``minidl digits`` is ``minidl train digits``).
ALIASES = ("digits", "mnist")

#: Text corpora of ``minidl train CORPUS``: a character language model learns to continue them.
TEXT_DATASETS: dict[str, str] = {
    "pydoc": "the standard library's help topics (pydoc_data.topics, about 465,000 characters; nothing downloaded)",
    "shakespeare": "Tiny Shakespeare (1,115,394 characters; downloaded once, 1.1 MB)",
}
#: The presets a text corpus trains, and the settings of their tables each has (minidl.recipes).
TEXT_PRESETS = {"char_gpt": recipes.CHAR_GPT, "char_lstm": recipes.CHAR_LSTM}


class _ShowConfig(argparse.Action):
    """``--version``: :func:`minidl.show_config`, then exit (like argparse's own version action)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from .backend import show_config

        show_config()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minidl", description="minidl: a small deep-learning framework in NumPy.")
    parser.add_argument("--version", action=_ShowConfig, help="print the version, backend, threads and BLAS, then exit")
    sub = parser.add_subparsers(dest="command", required=True)
    what = "train a preset on a data set and report its test accuracy"
    train = sub.add_parser(
        "train", help=what, description=f"{what[0].upper()}{what[1:]}. Training options left out come from the "
                                        "preset's recipe; minidl train DATASET --help lists that data set's options.",
        epilog="data sets, their presets and the presets' recipes (the defaults of the training options):\n"
               + "\n".join(f"  {name}: {data.about}, {_inputs(data.shape)}\n{_recipes(name, indent=4)}"
                           for name, data in DATASETS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = train.add_subparsers(dest="dataset", required=True, metavar="DATASET",
                                    title="data sets (DATASET)")
    for name in DATASETS:
        _add_dataset_command(commands, name, f"train on {DATASETS[name].about}")
    for name, about in TEXT_DATASETS.items():
        _add_text_command(commands, name, about)
    for name in ALIASES:
        _add_dataset_command(sub, name, f"the same as minidl train {name}")
    what = "continue a prompt with a character model saved by minidl train pydoc|shakespeare --save"
    gen = sub.add_parser("generate", help=what, description=f"{what[0].upper()}{what[1:]}.")
    gen.add_argument("checkpoint", metavar="CHECKPOINT", help="the saved model (its vocabulary is in "
                     "CHECKPOINT.tokenizer.json beside it)")
    gen.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    gen.add_argument("--tokens", type=_int_at_least(0, "non-negative"), default=300,
                     help="characters to generate (default: 300)")
    gen.add_argument("--temperature", type=_float_in(0.0, math.inf, False), default=0.8,
                     help="below 1 safer, above 1 wilder; 0 always takes the most likely character (default: 0.8)")
    gen.add_argument("--top-k", type=_positive_int, help="sample among the k most likely characters only")
    gen.add_argument("--seed", type=_int_at_least(0, "non-negative"), default=0,
                     help="seeds the sampling: the same seed gives the same text (default: 0)")
    return parser


def _add_text_command(sub, name: str, about: str) -> None:
    """``minidl train CORPUS``: a character language model, trained step by step, saved with its vocabulary."""
    what = f"train a character language model on {about}"
    cmd = sub.add_parser(name, help=f"train on {about}", description=f"{what[0].upper()}{what[1:]}, report its "
                         "held-out loss (nats and bits per character) and a sample of its text. Options left out "
                         "come from the preset's table in minidl.recipes.",
                         epilog="presets and their tables:\n" + "\n".join(f"  {preset}: {table}" for preset, table
                                                                             in TEXT_PRESETS.items()),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.set_defaults(dataset=name)
    cmd.add_argument("--preset", choices=sorted(TEXT_PRESETS), default="char_gpt", help="default: char_gpt")
    cmd.add_argument("--steps", type=_positive_int, help="optimizer steps (default: the table's)")
    cmd.add_argument("--batch-size", type=_positive_int, help="windows per step (default: the table's)")
    cmd.add_argument("--lr", type=_float_in(0.0, math.inf, True), help="Adam's learning rate (default: the table's)")
    cmd.add_argument("--context", type=_positive_int, help="characters per window (default: the table's)")
    cmd.add_argument("--eval-every", type=_positive_int, default=100,
                     help="steps between held-out measurements (default: 100)")
    cmd.add_argument("--seed", type=_int_at_least(0, "non-negative"), default=0,
                     help="seeds the weights, dropout, the windows and the sample (default: 0)")
    cmd.add_argument("--save", metavar="PATH", help="save the model at PATH and its vocabulary at "
                     "PATH.tokenizer.json, for minidl generate PATH")
    cmd.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                     help="0: only the results; 1 and 2: also the model summary and each held-out measurement")
    cmd.add_argument("--threads", type=_positive_int, help="threads for minidl's own kernels")
    if name == "shakespeare":
        cmd.add_argument("--data-dir", help="where the file is cached (default: $MINIDL_DATA or ~/.cache/minidl)")
        cmd.add_argument("--no-download", action="store_true", help="never use the network: the file must be cached")


def _add_dataset_command(sub, name: str, summary: str) -> None:
    """``name``'s command (under ``train``, or an alias) with its presets and the training options."""
    data = DATASETS[name]
    choices = recipes.presets_for(data.shape)
    what = f"train a preset on {data.about} and report its test accuracy"
    cmd = sub.add_parser(
        name, help=summary, description=f"{what[0].upper()}{what[1:]}. Training options left out come from the "
                                     "preset's recipe.",
        epilog=f"presets for {_inputs(data.shape)} and their recipes (the defaults of the training options):"
               f"\n{_recipes(name, indent=2)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.set_defaults(dataset=name)
    cmd.add_argument("--preset", type=_preset_of(name, choices), default=data.default,
                     metavar="{" + ",".join(choices) + "}", help=f"architecture (default: {data.default})")
    _add_training_options(cmd, data.samples)
    cmd.add_argument("--export", metavar="PATH",
                     help='after training, write the model as an ONNX file (needs pip install "minidl[onnx]")')
    if "blog_cnn" in choices:
        cmd.add_argument("--faithful", action="store_true",
                         help="blog_cnn only: the filters stay frozen at their random start; only the dense layer "
                              "trains")
    if data.downloads:
        cmd.add_argument("--data-dir", help="where the files are cached (default: $MINIDL_DATA or ~/.cache/minidl)")
        cmd.add_argument("--no-download", action="store_true",
                         help="never use the network: the files must be cached")
        cmd.add_argument("--trust-local", action="store_true",
                         help=f"your own copy of the files in <data-dir>/{name}/ (gzip-compressed or not): used as "
                              "they are, checked for format, sizes and labels instead of the published SHA-256 "
                              "digests; never downloads")


def _preset_of(dataset: str, choices: list[str]):
    """``--preset``'s parser: a preset for another input shape is a usage error naming the ones that fit."""
    def parse(text: str) -> str:
        if text in choices:
            return text
        shape = _inputs(DATASETS[dataset].shape).removesuffix(" images")
        why = (f"{text} takes {_inputs(recipes.INPUT_SHAPES[text])}, {dataset}'s are {shape}"
               if text in recipes.INPUT_SHAPES else f"no preset is called {text!r}")
        raise argparse.ArgumentTypeError(f"{why}; the presets for {dataset} are {', '.join(choices)}")
    return parse


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _inputs(shape: Sequence[int]) -> str:
    """What samples of ``shape`` are: ``1x8x8 images``, or ``rows of 64 token ids``."""
    return f"rows of {shape[0]} token ids" if len(shape) == 1 else f"{_shape(shape)} images"


def _recipes(dataset: str, indent: int) -> str:
    """One line per preset of ``dataset``: its name and its recipe there, as options."""
    default = DATASETS[dataset].default
    return "\n".join(f"{' ' * indent}{preset}{' (default)' if preset == default else ''}: "
                     f"{_describe(recipes.recipe_for(preset, dataset))}"
                     for preset in recipes.presets_for(DATASETS[dataset].shape))


def _add_training_options(cmd: argparse.ArgumentParser, samples: str) -> None:
    """The options every training command has (add new shared options here); ``samples``: "images", ..."""
    cmd.add_argument("--optimizer", choices=sorted(recipes.OPTIMIZERS),
                     help="default: the recipe's; choosing another one without --lr uses its own default lr")
    cmd.add_argument("--lr", type=_float_in(0.0, math.inf, True), help="learning rate (default: the recipe's)")
    cmd.add_argument("--epochs", type=_positive_int, help=f"passes over the training {samples} (default: the recipe's)")
    cmd.add_argument("--batch-size", type=_positive_int, help=f"{samples} per optimizer step (default: the recipe's)")
    cmd.add_argument("--momentum", type=_float_in(0.0, 1.0, False), help="SGD only")
    cmd.add_argument("--schedule", choices=recipes.SCHEDULES,
                     help="learning-rate schedule: cosine anneals to 0 over the epochs")
    cmd.add_argument("--seed", type=_int_at_least(0, "non-negative"), default=0,
                     help="seeds the weights and the shuffling (default: 0)")
    cmd.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                     help="0: only the two result lines (train time, test accuracy); 1: also the model summary, "
                          "the recipe and a progress bar per epoch; 2: the same with one line per epoch instead "
                          "of the bar (default: 2)")
    cmd.add_argument("--threads", type=_positive_int,
                     help="threads for the convolutions (default: one per CPU, or OPENBLAS_NUM_THREADS/OMP_NUM_THREADS "
                          "when set; minidl.set_num_threads); results are the same at any count")
    cmd.add_argument("--report", metavar="DIR",
                     help="also write DIR/report.md and pictures of the run (history, filters, feature maps, "
                          "confusion matrix, mistakes); needs the plot extra: pip install \"minidl[plot]\"")


def _describe(recipe: recipes.Recipe) -> str:
    """The recipe as the options that give it."""
    momentum = f" --momentum {recipe.momentum}" if recipe.optimizer == "sgd" else ""
    return (f"--optimizer {recipe.optimizer} --lr {recipe.lr}{momentum} --epochs {recipe.epochs} "
            f"--batch-size {recipe.batch_size} --schedule {recipe.schedule}")


def resolve_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> recipes.Recipe:
    """The preset's recipe with the options the user gave; contradictions are usage errors (exit 2)."""
    if getattr(args, "faithful", False) and args.preset != "blog_cnn":
        parser.error(f"--faithful applies only to --preset blog_cnn, not {args.preset}")
    if args.export is not None and importlib.util.find_spec("onnx") is None:  # before training, not after
        parser.error('--export needs the onnx package: pip install "minidl[onnx]"')
    recipe = recipes.recipe_for(args.preset, args.dataset)
    given = {k: getattr(args, k) for k in RECIPE_OPTIONS if getattr(args, k) is not None}
    optimizer = given.get("optimizer", recipe.optimizer)
    if optimizer != "sgd" and "momentum" in given:
        parser.error(f"--momentum applies only to --optimizer sgd; {args.preset} trains with {optimizer}")
    if optimizer != recipe.optimizer:
        # The recipe's lr and momentum were tuned for its own optimizer.
        given.setdefault("lr", inspect.signature(recipes.optimizer_class(optimizer)).parameters["lr"].default)
        given.setdefault("momentum", 0.0)
    return dataclasses.replace(recipe, **given)


def _load(args: argparse.Namespace) -> tuple:
    """``X_train, X_test, y_train, y_test`` of ``args.dataset``; what stops it is a :class:`CommandError`."""
    from . import datasets, text
    from .download import data_home

    load: Any = text.load_pydoc_topics if args.dataset == "pydoc-topics" else datasets.LOADERS[args.dataset]
    try:
        if DATASETS[args.dataset].downloads and args.trust_local:
            (X_train, y_train), (X_test, y_test) = load(path=data_home(args.data_dir) / args.dataset,
                                                        verbose=args.verbose > 0)
        elif DATASETS[args.dataset].downloads:
            (X_train, y_train), (X_test, y_test) = load(args.data_dir, download=not args.no_download,
                                                        verbose=args.verbose > 0)
        else:
            (X_train, y_train), (X_test, y_test) = load()
    # DownloadError (an OSError) says where to put the files by hand; DataFormatError names the bad file.
    except (OSError, datasets.DataFormatError) as err:
        raise CommandError(err) from None
    return X_train, X_test, y_train, y_test


def _check_outputs(args: argparse.Namespace) -> None:
    """Where --report and --export will write must be usable before training, not found wanting after it."""
    if args.report:
        try:
            os.makedirs(args.report, exist_ok=True)
        except OSError as err:
            raise CommandError(f"--report: cannot create the directory {args.report!r} ({err.strerror})") from None
        _check_writable("--report", args.report)
    if args.export is not None:
        if os.path.isdir(args.export):
            raise CommandError(f"--export: {args.export!r} is a directory, expected a file name such as model.onnx")
        _check_writable("--export", os.path.dirname(os.path.abspath(args.export)))


def _check_writable(option: str, folder: str) -> None:
    try:  # trying is the only test that holds for root, read-only mounts and /proc alike
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CommandError(f"{option}: cannot write in the directory {folder!r} ({err.strerror})") from None


def run(args: argparse.Namespace, recipe: recipes.Recipe) -> float:
    """Train ``args.preset`` on ``args.dataset`` with ``recipe``; print the results; return the accuracy."""
    from . import presets

    if args.threads is not None:
        from .threads import set_num_threads

        set_num_threads(args.threads)
    _check_outputs(args)
    X_train, X_test, y_train, y_test = _load(args)
    faithful = getattr(args, "faithful", False)
    if args.preset in presets.TEXT_PRESETS:
        from .text import load_pydoc_text

        # load_pydoc_topics' ids: the pydoc tokenizer's, plus one for the padding id 0
        model = presets.TEXT_PRESETS[args.preset](load_pydoc_text().tokenizer.vocab_size + 1, seed=args.seed)
    else:
        build = presets.MODELS[args.preset]
        model = build(seed=args.seed, faithful=True) if faithful else build(seed=args.seed)
    assert model.input_shape is not None  # every preset passes input_shape
    if args.export is not None:
        from .export import to_onnx

        try:
            to_onnx(model, None)  # a layer that cannot be exported is said before training, not after it
        except TypeError as err:
            raise CommandError(f"--export: {err}") from None
    if model.input_shape != X_train.shape[1:]:  # a preset reading single-channel images as rows (H, W)
        X_train = X_train.reshape(len(X_train), *model.input_shape)
        X_test = X_test.reshape(len(X_test), *model.input_shape)
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
    samples = DATASETS[args.dataset].samples
    print(f"train: {len(X_train)} {samples}, {epochs} epochs in {seconds:.2f} s "
          f"({seconds / max(epochs, 1):.3f} s/epoch)" + (", interrupted" if history.interrupted else ""))
    print(f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {len(X_test)} {samples}")
    if args.report:
        from .report import write_report

        written = write_report(args.report, model, history, X_test, y_test, command=args.command_line,
                               preset=args.preset, recipe=f"{_describe(recipe)} --seed {args.seed}", seconds=seconds)
        print(f"report: {written['report.md']} and {len(written) - 1} pictures")
    if args.export is not None:
        from .export import to_onnx

        graph = to_onnx(model, args.export).graph
        if args.verbose:
            dims = graph.input[0].type.tensor_type.shape.dim
            shape = ", ".join(d.dim_param or str(d.dim_value) for d in dims)  # symbolic axes by their names
            print(f"exported: {args.export} (ONNX opset 13; input 'input' ({shape}), output 'output' probabilities)")
    return result["accuracy"]


def run_text(args: argparse.Namespace) -> float:
    """Train ``args.preset`` on the text corpus ``args.dataset``; print the results; return the held-out loss."""
    from . import datasets, presets, text
    from .language import save_checkpoint, train_language_model

    if args.threads is not None:
        from .threads import set_num_threads

        set_num_threads(args.threads)
    if args.save is not None:
        if os.path.isdir(args.save):
            raise CommandError(f"--save: {args.save!r} is a directory, expected a file name such as model.minidl")
        _check_writable("--save", os.path.dirname(os.path.abspath(args.save)))
    try:
        data = (text.load_pydoc_text() if args.dataset == "pydoc" else
                datasets.load_tiny_shakespeare(args.data_dir, download=not args.no_download, verbose=args.verbose > 0))
    except (OSError, ValueError) as err:
        raise CommandError(err) from None
    table = TEXT_PRESETS[args.preset]
    steps = args.steps or int(table["steps"])
    batch_size = args.batch_size or int(table["batch_size"])
    lr = args.lr or float(table["lr"])
    overrides = {"context": args.context} if args.context else {}
    model = getattr(presets, args.preset)(data.tokenizer.vocab_size, seed=args.seed, **overrides)
    if args.verbose:
        model.summary()
        print(f"{args.dataset}: {len(data.train):,} training / {len(data.validation):,} held-out characters, "
              f"vocabulary {data.tokenizer.vocab_size}; {steps} steps of {batch_size} windows of "
              f"{model.input_shape[0]}, Adam lr {lr}, seed {args.seed}")

    def report(step: int, loss: float, held_out: float) -> None:
        if args.verbose:
            print(f"step {step}: training loss {loss:.4f}, held-out {held_out:.4f} nats/char", flush=True)

    start = time.perf_counter()
    curve = train_language_model(model, data, steps, batch_size, lr, seed=args.seed, eval_every=args.eval_every,
                                 report=report)
    seconds = time.perf_counter() - start
    trained, held_out = curve[-1]  # fewer steps than asked for after Ctrl-C
    print(f"train: {trained} steps in {seconds:.2f} s ({seconds / max(trained, 1):.3f} s/step)"
          + (", interrupted" if model.history.interrupted else ""))
    print(f"held-out loss: {held_out:.4f} nats/char ({held_out / math.log(2):.4f} bits/char) on "
          f"{len(data.validation):,} characters")
    prompt = data.tokenizer.decode(data.validation[:16])
    sample = model.generate(data.tokenizer.encode(prompt), 200, temperature=0.8, seed=args.seed)
    print(f"sample (temperature 0.8, prompt {prompt!r}):\n{data.tokenizer.decode(sample)}")
    if args.save is not None:
        save_checkpoint(model, data.tokenizer, args.save)
        print(f"saved: {args.save} and {args.save}.tokenizer.json (minidl generate {shlex.quote(args.save)})")
    return held_out


def run_generate(args: argparse.Namespace) -> str:
    """Print ``args.tokens`` characters generated after ``args.prompt`` by the checkpoint; return the text."""
    from .language import load_checkpoint

    try:
        model, tokenizer = load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as err:
        raise CommandError(err) from None
    try:
        prompt = tokenizer.encode(args.prompt)
    except ValueError as err:
        raise CommandError(f"--prompt: {err}") from None
    if len(prompt) == 0:
        raise CommandError("--prompt: give at least one character to continue")
    ids = model.generate(prompt, args.tokens, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    out = tokenizer.decode(ids)
    print(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Bad options exit with status 2 and a usage message (argparse); a diverged run, or data that
    cannot be downloaded, with 1 and one error line; Ctrl-C outside ``fit`` (which stops at a step
    and reports what it has) with 130 and one line, also while the command's modules are imported
    (the signal is held until they are: :mod:`minidl._sigint`).
    """
    from ._sigint import HELD

    HELD.hold()
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("minidl: interrupted", file=sys.stderr)
        return 130


def _run(argv: Sequence[str] | None) -> int:
    from ._sigint import HELD

    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # --help and usage errors exit here, before NumPy is imported
        if getattr(args, "report", None):
            try:
                from . import plot  # noqa: F401  (missing matplotlib is said before training, not after)
            except ImportError as err:
                parser.error(str(err))
        _import_modules(args)
    finally:
        HELD.release()  # a Ctrl-C held while importing is raised here, as a KeyboardInterrupt
    from .guard import NonFiniteLossError

    args.command_line = "python -m minidl " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "generate":
            run_generate(args)
        elif args.dataset in TEXT_DATASETS:
            run_text(args)
        else:
            run(args, resolve_recipe(args, parser))
    except (NonFiniteLossError, CommandError, FloatingPointError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    return 0


def _import_modules(args: argparse.Namespace) -> None:
    """Import what the command will use, so that no import is under way when Ctrl-C is let through."""
    modules = ["minidl.presets", "minidl.datasets", "minidl.guard", "minidl.training", "minidl.progress",
               "minidl.threads", "minidl.report" if getattr(args, "report", None) else None]
    if args.command == "generate" or getattr(args, "dataset", None) in TEXT_DATASETS:
        modules += ["minidl.language", "minidl.generation", "minidl.text", "minidl.saving", "minidl.optim"]
    if getattr(args, "export", None) is not None and importlib.util.find_spec("onnx") is not None:
        modules += ["minidl.export", "onnx", "onnx.helper", "onnx.numpy_helper"]
    if getattr(args, "dataset", None) == "pydoc-topics":
        modules += ["minidl.text"]
    if getattr(args, "dataset", None) == "digits":  # minidl.data imports scikit-learn inside load_digits
        modules += ["sklearn.datasets", "sklearn.model_selection"]
    for name in filter(None, modules):
        importlib.import_module(name)


if __name__ == "__main__":
    sys.exit(main())
