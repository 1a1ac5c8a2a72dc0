"""What every optimizer holds besides its update rule: the checked parameter list and the state dict.

:class:`minidl.optim.Optimizer` calls these; an optimizer declares its ``hyperparameters`` and, if it
keeps per-parameter state (``state``), the keys of an entry (``_state_slots``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .arguments import as_type_of
from .layers.state import Parameter

if TYPE_CHECKING:
    from .optim import Optimizer

__all__ = ["as_param_list", "state_dict", "parse_state_dict"]


def as_param_list(params: Any, owner: str) -> list[Parameter]:
    """``params`` as a non-empty list of distinct :class:`Parameter` objects, or a clear error naming ``owner``.

    Args:
        params: what the optimizer got, e.g. ``model.parameters()``.
        owner: the optimizer's class name, for messages.

    Example::

        as_param_list(model.parameters(), "SGD")
    """
    if isinstance(params, Parameter) or not isinstance(params, Iterable):
        raise TypeError(
            f"{owner}: params must be a list of Parameters (model.parameters()), got {type(params).__name__}"
        )
    listed = list(params)
    if not listed:
        raise ValueError(f"{owner}: got an empty parameter list")
    bad = [p for p in listed if not isinstance(p, Parameter)]
    if bad:
        raise TypeError(
            f"{owner}: params must be Parameter objects (pass model.parameters()), got {type(bad[0]).__name__}"
        )
    if len({id(p) for p in listed}) != len(listed):
        raise ValueError(f"{owner}: a parameter appears more than once in params; it would be updated twice")
    return listed


def state_dict(opt: Optimizer) -> dict[str, Any]:
    """``opt``'s hyper-parameters and ``"<i>.<slot>"`` copies of its per-parameter state (see ``Optimizer.state_dict``).

    Example::

        state_dict(SGD(model.parameters(), momentum=0.9))  # {"lr": 0.01, "momentum": 0.9, ...}
    """
    out: dict[str, Any] = {k: getattr(opt, k) for k in opt.hyperparameters}
    for i, slots in enumerate(opt.state):
        out.update({f"{i}.{k}": v.copy() if isinstance(v, np.ndarray) else v for k, v in slots.items()})
    return out


def parse_state_dict(opt: Optimizer, state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check ``state`` against ``opt`` before anything changes: ``(hyper-parameters, per-parameter state)``.

    A state that does not fit raises ``ValueError`` listing the missing and the unexpected keys,
    or naming a slot whose shape is not its parameter's.

    Example::

        hyper, per_param = parse_state_dict(opt, opt.state_dict())
    """
    name = type(opt).__name__
    missing = [k for k in opt.hyperparameters if k not in state]
    if missing:
        raise ValueError(f"{name}.load_state_dict: missing key(s) {missing}")
    hyper = {k: as_type_of(getattr(opt, k), state[k]) for k in opt.hyperparameters}
    slots = opt._state_slots(hyper)
    unexpected = [key for key in state if key not in hyper and not _slot_key(key, len(opt.params), slots)]
    if unexpected:
        raise ValueError(f"{name}.load_state_dict: unexpected key(s) {unexpected} (this optimizer has "
                         f"{len(opt.params)} parameters with state {sorted(slots)})")
    per_param: list[dict[str, Any]] = [{} for _ in opt.params]
    for key, value in state.items():
        if key in hyper:
            continue
        index, _, slot = key.partition(".")
        p = opt.params[int(index)]
        if slot == "step":
            per_param[int(index)][slot] = int(value)
            continue
        value = np.asarray(value)
        if value.shape != p.shape:
            raise ValueError(f"{name}.load_state_dict: {key!r} has shape {value.shape}, "
                             f"the parameter has {p.shape}")
        per_param[int(index)][slot] = value.astype(p.dtype, copy=True)
    for i, entry in enumerate(per_param):
        if entry and set(entry) != slots:
            lacking = [f"{i}.{k}" for k in sorted(slots - set(entry))]
            raise ValueError(f"{name}.load_state_dict: missing key(s) {lacking}")
    return hyper, per_param


def _slot_key(key: str, n_params: int, slots: set[str]) -> bool:
    """Whether ``key`` is ``"<i>.<slot>"`` for one of ``n_params`` parameters and a known slot."""
    index, _, slot = key.partition(".")
    return index.isdigit() and int(index) < n_params and slot in slots
