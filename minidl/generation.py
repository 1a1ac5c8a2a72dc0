"""Autoregressive sampling from a language model: :func:`generate`.

A language model here is any built model that maps token ids ``(N, T)`` to next-token logits
``(N, T, V)`` and is *causal*: the logits at step ``t`` depend on the tokens at steps ``<= t`` only
(a decoder-only transformer with ``MultiHeadAttention(causal=True)``, or a forward RNN). A model
built for sequences of exactly ``T`` steps takes windows of ``T`` tokens: a shorter context is
padded on the right with id 0 and the logits are read at its last real step, which the padding
cannot reach in a causal model; a longer one keeps its last ``T`` tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arguments import as_float, as_int

__all__ = ["generate", "next_token_logits"]


def next_token_logits(model: Any, context: np.ndarray) -> np.ndarray:
    """The logits ``(N, V)`` that ``model`` gives for the token after each row of ``context`` ``(N, L)``.

    Args:
        model: a built causal language model (see the module's docstring).
        context: int64 token ids ``(N, L)``, ``L >= 1``; only the last ``T`` are used if the model
            takes windows of ``T`` steps.

    Shape:
        ``(N, L) -> (N, V)``.

    Example::

        logits = next_token_logits(model, tokenizer.encode("ROMEO:")[None])   # (1, vocab_size)
    """
    window = _window_length(model)
    if window is not None:
        context = context[:, -window:]
    last = context.shape[1] - 1
    if window is not None and context.shape[1] < window:
        context = np.pad(context, ((0, 0), (0, window - context.shape[1])))  # after the last step: unseen
    x = model.forward(context)
    if x.ndim != 3:
        raise ValueError(f"generate: the model must map tokens (N, T) to logits (N, T, V), it gave shape "
                         f"{x.shape}")
    return x[:, last].astype(np.float64)


def _window_length(model: Any) -> int | None:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("generate: the model is not built; build it with input_shape=(T,) first")
    if len(shape) != 1:
        raise ValueError(f"generate: the model must take token ids (N, T), its input shape is {shape}")
    return shape[0]


def generate(
    model: Any,
    prompt_tokens: Any,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Extend ``prompt_tokens`` by ``max_new_tokens`` tokens sampled one at a time from ``model``.

    Each step feeds the last ``T`` tokens (the model's sequence length) to the model, divides the
    logits of the next token by ``temperature``, keeps the ``top_k`` largest (if given), and draws
    from their softmax with a generator seeded by ``seed``: the same seed gives the same tokens.
    ``temperature=0`` takes the most likely token every time (greedy; ties go to the lowest id).

    Args:
        model: a built causal language model mapping ids ``(N, T)`` to logits ``(N, T, V)``
            (module docstring), e.g. the ``char_gpt`` preset.
        prompt_tokens: integer ids, ``(L,)`` for one prompt or ``(N, L)`` for ``N`` prompts of
            the same length; ``L >= 1``.
        max_new_tokens: how many tokens to add (``>= 0``).
        temperature: ``> 0`` scales the logits (below 1 sharper, above 1 flatter); ``0`` is greedy.
        top_k: sample among the ``top_k`` most likely tokens only (``None``: all of them).
        seed: seeds the sampling generator (``None``: fresh entropy).

    Shape:
        ``(L,) -> (L + max_new_tokens,)``; ``(N, L) -> (N, L + max_new_tokens)``; int64.

    Example::

        ids = generate(model, tokenizer.encode("ROMEO:"), max_new_tokens=100, temperature=0.8, seed=0)
        print(tokenizer.decode(ids))
    """
    prompt = np.asarray(prompt_tokens)
    if prompt.dtype.kind not in "iu":
        raise TypeError(f"generate: prompt_tokens must be integer token ids, got dtype {prompt.dtype}")
    if prompt.ndim not in (1, 2) or prompt.shape[-1] == 0:
        raise ValueError(f"generate: prompt_tokens must have shape (L,) or (N, L) with L >= 1, got {prompt.shape}")
    max_new_tokens = as_int(max_new_tokens, "max_new_tokens", "generate", minimum=0)
    temperature = as_float(temperature, "temperature", "generate", low=0.0)
    if top_k is not None:
        top_k = as_int(top_k, "top_k", "generate", minimum=1)
    if seed is not None:
        as_int(seed, "seed", "generate")
    _window_length(model)
    rng = np.random.default_rng(seed)
    tokens = np.array(prompt, dtype=np.int64, ndmin=2)
    for _ in range(max_new_tokens):
        logits = next_token_logits(model, tokens)
        if top_k is not None and top_k < logits.shape[1]:
            kth = np.partition(logits, -top_k, axis=1)[:, -top_k, None]
            logits = np.where(logits < kth, -np.inf, logits)
        if temperature == 0:
            chosen = logits.argmax(axis=1)
        else:
            scaled = logits / temperature
            p = np.exp(scaled - scaled.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            # One uniform in (0, 1] per row, inverted through the row's cumulative distribution (no loop
            # over rows); scaled by the row's total, it can only land on a token of non-zero probability.
            cumulative = p.cumsum(axis=1)
            u = (1.0 - rng.random((len(p), 1))) * cumulative[:, -1:]
            chosen = (cumulative < u).sum(axis=1)
        tokens = np.concatenate([tokens, chosen[:, None].astype(np.int64)], axis=1)
    return tokens[0] if prompt.ndim == 1 else tokens
