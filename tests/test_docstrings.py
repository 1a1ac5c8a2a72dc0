"""Every public class and function documents itself in PyTorch's form (issue 18, move 7).

Public names are those in the ``__all__`` of the modules the API reference renders (docs/api/); a
module without ``__all__`` counts the classes and functions it defines whose names do not start with ``_``.
Each needs a docstring with a one-line summary, an ``Args:`` section when it takes arguments, a
``Shape:`` section when it is a layer or a loss, and an ``Example::`` (a tiny runnable example);
examples written as ``>>>`` sessions are run (with the module's names and ``np`` in scope).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import sys

import numpy as np
import pytest

from minidl.layers import Layer, Loss

MODULES = [
    "minidl", "minidl.layers", "minidl.model", "minidl.optim", "minidl.lr_scheduler", "minidl.callbacks", "minidl.data",
    "minidl.datasets", "minidl.text", "minidl.saving", "minidl.sklearn", "minidl.export",
    "minidl.presets", "minidl.plot", "minidl.generation", "minidl.backend", "minidl.layers.state", "minidl.config",
    "minidl.testing",
]


def public_objects() -> list[tuple[str, object]]:
    """``(qualified name, object)`` of every class and function in the modules' ``__all__``, once each."""
    seen: dict[int, str] = {}
    found = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [name for name, obj in vars(module).items()
                     if not name.startswith("_") and getattr(obj, "__module__", None) == module_name]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen[id(obj)] = f"{module_name}.{name}"
            found.append((f"{module_name}.{name}", obj))
    return found


PUBLIC = public_objects()


def takes_arguments(obj: object) -> bool:
    """Whether calling ``obj`` (a function, or a class through its constructor) takes any argument."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isclass(obj) and not inspect.isfunction(target):  # object's or an exception's built-in __init__
        return False
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name not in ("self", "cls") for p in params)


def problems(obj: object) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return ["no docstring"]
    found = []
    if takes_arguments(obj) and "\nArgs:\n" not in f"\n{doc}\n":
        found.append("no Args: section")
    if inspect.isclass(obj) and issubclass(obj, (Layer, Loss)) and "\nShape:\n" not in f"\n{doc}\n":
        found.append("no Shape: section")
    if not any(marker in f"\n{doc}" for marker in ("\nExample::", "\nExample:", "\nExamples:", "\nExamples::")):
        found.append("no Example:: section")
    return found


def test_the_walk_finds_the_public_api_and_the_check_finds_what_is_missing():
    names = {name for name, _ in PUBLIC}
    assert {"minidl.layers.Dense", "minidl.layers.LSTM", "minidl.layers.SoftmaxCE", "minidl.layers.Layer",
            "minidl.generation.generate"} <= names

    class Bare(Layer, register=False):
        """A layer documented by its summary only."""

        def __init__(self, units: int) -> None:
            super().__init__()

    assert problems(Bare) == ["no Args: section", "no Shape: section", "no Example:: section"]
    assert problems(lambda x: x) == ["no docstring"]


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_name_is_documented_in_pytorch_form(name, obj):
    assert not problems(obj), f"{name}: {', '.join(problems(obj))}"


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_doctest_examples_run(name, obj):
    globs = {**vars(sys.modules[obj.__module__]), "np": np}
    for test in doctest.DocTestFinder(recurse=False).find(obj, name, globs=globs):
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        report: list[str] = []
        runner.run(test, out=report.append)
        assert not runner.failures, "".join(report)
