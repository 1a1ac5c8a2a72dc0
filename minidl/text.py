"""Character-level text data: a tokenizer and two corpora as train/validation token arrays.

- :func:`load_pydoc_text`: the text of the standard library's ``pydoc_data.topics`` (the help
  topics of ``help()``), about 465,000 characters: every Python install has it, nothing is
  downloaded.
- :func:`minidl.datasets.load_tiny_shakespeare`: the 1.1 MB "tiny Shakespeare" corpus of
  Karpathy's char-rnn (``data/tinyshakespeare/input.txt``), downloaded once into the cache with
  :mod:`minidl.download` (checked against its published SHA-256 digest, resumable).

Both return a :class:`TextData`: the :class:`CharTokenizer` of the corpus's characters and the
token ids (int64) of the training and validation parts. The validation part is the *last*
``validation_fraction`` (default 10%) of the characters, the training part the rest: a contiguous
split, so that no validation text is seen in training, as char-rnn and nanoGPT split it. The
vocabulary is that of the whole corpus (so every validation character has an id), in code point
order.

:func:`load_pydoc_topics` turns the pydoc corpus into a sequence classification task: which help
topic a window of characters comes from (padded token ids, for ``text_cnn`` and ``text_lstm``).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import numpy as np

__all__ = ["CharTokenizer", "TextData", "load_pydoc_text", "load_pydoc_topics", "split_text"]


class CharTokenizer:
    """Characters to token ids and back: id ``i`` is the ``i``-th character of ``vocab``.

    Args:
        vocab: the vocabulary, a string of distinct characters (e.g. ``tokenizer.vocab`` saved
            earlier); :meth:`from_text` makes one from a text.

    Shape:
        - :meth:`encode`: a string of length ``L`` -> int64 ids ``(L,)``.
        - :meth:`decode`: integer ids of any shape -> the string of their characters (flattened).

    Example::

        >>> tokenizer = CharTokenizer.from_text("hello world")
        >>> tokenizer.vocab, tokenizer.vocab_size
        (' dehlorw', 8)
        >>> ids = tokenizer.encode("hello")
        >>> ids.tolist(), tokenizer.decode(ids)
        ([3, 2, 4, 4, 5], 'hello')
    """

    def __init__(self, vocab: str) -> None:
        if not isinstance(vocab, str):
            raise TypeError(f"CharTokenizer: vocab must be a str of distinct characters, got {type(vocab).__name__}")
        if not vocab:
            raise ValueError("CharTokenizer: vocab must hold at least one character, got ''")
        if len(set(vocab)) != len(vocab):
            repeated = sorted({c for c in vocab if vocab.count(c) > 1})
            raise ValueError(f"CharTokenizer: vocab must hold distinct characters, got {''.join(repeated)!r} "
                             "more than once")
        self.vocab = vocab
        self._codes = _code_points(vocab)
        self._order = np.argsort(self._codes)  # encode looks code points up in sorted order
        self._sorted = self._codes[self._order]

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer of the distinct characters of ``text``, in code point order."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.from_text: text must be a str, got {type(text).__name__}")
        return cls("".join(sorted(set(text))))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """The tokenizer saved at ``path`` by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if not isinstance(saved, dict) or not isinstance(saved.get("vocab"), str):
            raise ValueError(f"{path} is not a saved CharTokenizer: expected a JSON object with a 'vocab' string")
        return cls(saved["vocab"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary to ``path`` as JSON (UTF-8); :meth:`load` reads it back."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"vocab": self.vocab}, f, ensure_ascii=False)

    @property
    def vocab_size(self) -> int:
        """The number of characters, so ids run over ``0 .. vocab_size - 1``."""
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """The ids of the characters of ``text``, int64 of shape ``(len(text),)``.

        Raises a ValueError naming the first character not in the vocabulary, its position and how many
        distinct ones there are.
        """
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode: text must be a str, got {type(text).__name__}")
        codes = _code_points(text)
        where = np.minimum(np.searchsorted(self._sorted, codes), len(self._sorted) - 1)
        unknown = self._sorted[where] != codes
        if unknown.any():
            first = int(np.argmax(unknown))
            distinct = len(set(text[i] for i in np.flatnonzero(unknown)[:10_000]))
            raise ValueError(f"CharTokenizer.encode: character {text[first]!r} at position {first} is not in the "
                             f"vocabulary ({distinct} unknown character(s)); the vocabulary has {self.vocab_size}: "
                             f"{self.vocab[:80]!r}{'...' if self.vocab_size > 80 else ''}")
        return self._order[where].astype(np.int64)

    def decode(self, ids: Any) -> str:
        """The string of the characters of ``ids`` (integers in ``0 .. vocab_size - 1``, any shape, read flat)."""
        ids = np.asarray(ids)
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"CharTokenizer.decode: ids must be integers, got dtype {ids.dtype}")
        ids = ids.reshape(-1).astype(np.int64)
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(f"CharTokenizer.decode: id {ids[first]} at position {first} is outside the vocabulary "
                             f"(ids 0..{self.vocab_size - 1})")
        return self._codes[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.vocab == self.vocab

    def __hash__(self) -> int:
        return hash(self.vocab)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class TextData(NamedTuple):
    """A corpus as a tokenizer and the token ids of its training and validation parts (int64).

    Example::

        >>> data = split_text("hello world, hello minidl", validation_fraction=0.2)
        >>> data.tokenizer.decode(data.train[:5])
        'hello'
    """

    tokenizer: CharTokenizer
    train: np.ndarray
    validation: np.ndarray


def split_text(text: str, validation_fraction: float = 0.1) -> TextData:
    """``text`` as a :class:`TextData`: the vocabulary of all of it, the last ``validation_fraction`` of
    its characters (rounded down) for validation and the rest for training.

    Args:
        text: the corpus.
        validation_fraction: the share of characters, at the end, held out; in ``[0, 1)``.

    Shape:
        - train: ``(len(text) - n_val,)``, validation: ``(n_val,)`` with
          ``n_val = int(len(text) * validation_fraction)``.

    Example::

        >>> data = split_text("abcabcabca", validation_fraction=0.2)
        >>> data.train.tolist(), data.validation.tolist()
        ([0, 1, 2, 0, 1, 2, 0, 1], [2, 0])
    """
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)):
        raise TypeError(f"validation_fraction must be a number in [0, 1), got {validation_fraction!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be a number in [0, 1), got {validation_fraction!r}")
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    cut = len(ids) - int(len(ids) * validation_fraction)
    return TextData(tokenizer, ids[:cut], ids[cut:])


def load_pydoc_text(validation_fraction: float = 0.1) -> TextData:
    """The text of the standard library's ``pydoc_data.topics``: every topic string, in sorted key order,
    joined; about 465,000 characters and 100 distinct ones (the exact figures depend on the Python
    version). Nothing is downloaded.

    Args:
        validation_fraction: the share of characters, at the end, held out for validation.

    Example::

        >>> tokenizer, train, validation = load_pydoc_text()
        >>> tokenizer.decode(train[:12])
        'The "assert"'
    """
    from pydoc_data import topics

    text = "".join(topics.topics[key] for key in sorted(topics.topics))
    return split_text(text, validation_fraction)


def load_pydoc_topics(num_classes: int = 4, max_length: int = 64, seed: int = 0, *, min_length: int | None = None,
                      train_per_class: int = 500, test_per_class: int = 100, test_every: int = 5
                      ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Which pydoc help topic a window of text comes from: a small offline sequence classification task.

    The classes are the ``num_classes`` longest topics of ``pydoc_data.topics`` (``"specialnames"``,
    ``"compound"``, ``"types"``, ``"formatstrings"``, ... ; ties by name), in that order. Each topic's text
    is cut into blocks of ``8 * max_length`` characters (the last partial one dropped); every
    ``test_every``-th block feeds the test windows, the others the training windows, so no test
    character is seen in training and both parts cover the whole topic. A window lies inside one block,
    starts at a random place and has a random length in ``[min_length, max_length]``; its characters become
    the ids of :func:`load_pydoc_text`'s tokenizer *plus one*, right-padded with 0 to ``max_length``:
    id 0 is padding only, which ``Embedding(vocab_size, dim, mask_zero=True)`` turns into a mask. The
    vocabulary size to give an ``Embedding`` is therefore ``load_pydoc_text().tokenizer.vocab_size + 1``.

    Args:
        num_classes: the number of topics ``K`` (at least 2).
        max_length: the padded length ``T`` of every row.
        seed: seeds the windows' starts and lengths and the order of the rows.
        min_length: the shortest window; default ``max(1, max_length // 4)``.
        train_per_class: training windows per topic.
        test_per_class: test windows per topic.
        test_every: every how many blocks of a topic one is held out for the test windows.

    Shape:
        ``X_train (K·train_per_class, T)`` and ``X_test (K·test_per_class, T)`` int64 ids; ``y`` int64
        labels in ``[0, K)``, shuffled.

    Example::

        >>> (X_train, y_train), (X_test, y_test) = load_pydoc_topics(num_classes=3, max_length=32)
        >>> X_train.shape, X_test.shape, sorted(set(y_train.tolist()))
        ((1500, 32), (300, 32), [0, 1, 2])
    """
    from pydoc_data import topics

    def whole(value: Any, name: str, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"load_pydoc_topics: {name} must be an int >= {low}, got {value!r}")
        if value < low:
            raise ValueError(f"load_pydoc_topics: {name} must be an int >= {low}, got {value!r}")
        return int(value)

    texts = topics.topics
    names = sorted(texts, key=lambda key: (-len(texts[key]), key))
    num_classes = whole(num_classes, "num_classes", 2)
    if num_classes > len(names):
        raise ValueError(f"load_pydoc_topics: num_classes must be at most {len(names)} (the topics), got {num_classes}")
    max_length = whole(max_length, "max_length", 1)
    min_length = max(1, max_length // 4) if min_length is None else whole(min_length, "min_length", 1)
    if min_length > max_length:
        raise ValueError(f"load_pydoc_topics: min_length must be <= max_length={max_length}, got {min_length}")
    counts = whole(train_per_class, "train_per_class", 1), whole(test_per_class, "test_per_class", 1)
    test_every = whole(test_every, "test_every", 2)
    block = 8 * max_length
    tokenizer = load_pydoc_text().tokenizer
    rng = np.random.default_rng(seed)
    steps = np.arange(max_length)
    parts: list[list[np.ndarray]] = [[], []]
    for label, name in enumerate(names[:num_classes]):
        ids = tokenizer.encode(texts[name]) + 1
        blocks = ids[:len(ids) - len(ids) % block].reshape(-1, block)
        test = np.arange(len(blocks)) % test_every == test_every - 1
        for part, (source, count) in enumerate(zip((blocks[~test], blocks[test]), counts, strict=True)):
            if not len(source):
                raise ValueError(f"load_pydoc_topics: topic {name!r} has no {'test' if part else 'training'} "
                                 f"block of {block} characters; lower max_length or test_every")
            lengths = rng.integers(min_length, max_length + 1, size=count)
            rows, starts = rng.integers(0, len(source), size=count), rng.integers(0, block - lengths + 1)
            windows = source[rows[:, None], np.minimum(starts[:, None] + steps, block - 1)]
            parts[part].append(np.column_stack([np.where(steps < lengths[:, None], windows, 0), np.full(count, label)]))
    out = []
    for chunks in parts:
        data = np.concatenate(chunks)[rng.permutation(sum(len(c) for c in chunks))]
        out.append((np.ascontiguousarray(data[:, :-1], dtype=np.int64), data[:, -1].astype(np.int64)))
    return out[0], out[1]


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
