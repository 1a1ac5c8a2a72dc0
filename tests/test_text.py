"""minidl.text: the character tokenizer, the offline pydoc corpus, tiny Shakespeare from a local server."""

from __future__ import annotations

import doctest
import hashlib

import numpy as np
import pytest
from data_server import FileServer
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl.text
from minidl import datasets, download
from minidl.datasets import load_tiny_shakespeare
from minidl.download import ChecksumError, DownloadError, RemoteFile
from minidl.text import (
    CharTokenizer,
    TextData,
    load_pydoc_text,
    load_pydoc_topics,
    split_text,
)

CORPUS = (b"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          b"First Citizen:\nYou are all resolved rather to die than to famish?\n")


@given(st.text(min_size=1, max_size=200), st.text(max_size=200))
@settings(max_examples=60, deadline=None)
def test_tokenizer_round_trip(vocab_text, extra):
    tokenizer = CharTokenizer.from_text(vocab_text + extra)
    for text in (vocab_text, extra):
        ids = tokenizer.encode(text)
        assert ids.dtype == np.int64 and ids.shape == (len(text),)
        assert ((0 <= ids) & (ids < tokenizer.vocab_size)).all()
        assert tokenizer.decode(ids) == text
    assert list(tokenizer.vocab) == sorted(set(vocab_text + extra))
    assert CharTokenizer(tokenizer.vocab) == tokenizer  # a saved vocabulary gives the same tokenizer


@given(st.text(min_size=1, max_size=50), st.permutations(range(8)))
@settings(max_examples=30, deadline=None)
def test_a_given_vocabulary_keeps_its_order(text, order):
    vocab = "".join(np.array(list("abcdefgh"))[list(order)])
    tokenizer = CharTokenizer(vocab)
    assert tokenizer.encode("abcdefgh").tolist() == [order.index(i) for i in range(8)]
    ids = np.arange(8).reshape(2, 4)
    assert tokenizer.decode(ids) == vocab  # any shape, read flat


def test_save_and_load(tmp_path):
    tokenizer = CharTokenizer.from_text("héllo wörld — ✓")
    tokenizer.save(tmp_path / "vocab.json")
    assert CharTokenizer.load(tmp_path / "vocab.json") == tokenizer
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        CharTokenizer.load(tmp_path / "bad.json")


def test_unknown_characters_and_bad_ids_are_clear_errors():
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"character 'z' at position 2 is not in the vocabulary \(2 unknown"):
        tokenizer.encode("abzcy")
    with pytest.raises(ValueError, match=r"id 3 at position 1 is outside the vocabulary \(ids 0..2\)"):
        tokenizer.decode([0, 3])
    with pytest.raises(ValueError, match="id -1"):
        tokenizer.decode(np.array([-1]))
    with pytest.raises(TypeError, match="ids must be integers, got dtype float64"):
        tokenizer.decode(np.array([0.5]))
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        tokenizer.encode(b"abc")
    with pytest.raises(ValueError, match="distinct characters, got 'a' more than once"):
        CharTokenizer("aba")
    with pytest.raises(ValueError, match="at least one character"):
        CharTokenizer("")
    with pytest.raises(TypeError, match="vocab must be a str"):
        CharTokenizer(["a", "b"])
    assert tokenizer.decode([]) == "" and tokenizer.encode("").shape == (0,)


def test_split_holds_out_the_end():
    data = split_text("abcdefghij" * 10, validation_fraction=0.25)
    assert isinstance(data, TextData) and len(data.train) == 75 and len(data.validation) == 25
    assert data.tokenizer.decode(np.concatenate([data.train, data.validation])) == "abcdefghij" * 10
    assert len(split_text("abc", 0.0).validation) == 0
    for bad, kind in ((1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError),
                      (True, TypeError)):
        with pytest.raises(kind, match="validation_fraction must be a number in \\[0, 1\\)"):
            split_text("abc", bad)


def test_the_pydoc_corpus_is_offline_and_about_465000_characters():
    tokenizer, train, validation = load_pydoc_text()
    total = len(train) + len(validation)
    assert 350_000 < total < 600_000  # 464,970 characters with Python 3.11
    assert 80 <= tokenizer.vocab_size <= 130  # 103 distinct
    assert len(validation) == int(total * 0.1) and train.dtype == validation.dtype == np.int64
    text = tokenizer.decode(np.concatenate([train, validation]))
    from pydoc_data import topics

    assert text == "".join(topics.topics[k] for k in sorted(topics.topics))
    assert datasets.load_pydoc_text is load_pydoc_text


def test_docstring_examples_run():
    result = doctest.testmod(minidl.text)
    assert result.attempted >= 6 and result.failed == 0


@pytest.fixture
def shakespeare(monkeypatch):
    """A small stand-in for input.txt, pinned to its own digest, served from 127.0.0.1."""
    monkeypatch.setattr(download, "RETRY_DELAY", 0.0)
    monkeypatch.setitem(datasets.FILES, "tiny-shakespeare",
                        (RemoteFile("input.txt", hashlib.sha256(CORPUS).hexdigest(), len(CORPUS)),))
    with FileServer({"input.txt": CORPUS}) as server:
        yield server


def test_tiny_shakespeare_downloads_once_and_splits(shakespeare, tmp_path):
    tokenizer, train, validation = load_tiny_shakespeare(tmp_path, base_url=shakespeare.url, verbose=False)
    text = CORPUS.decode()
    assert tokenizer.vocab == "".join(sorted(set(text)))
    assert tokenizer.decode(train) + tokenizer.decode(validation) == text
    assert len(validation) == int(len(text) * 0.1) and train.dtype == np.int64
    assert (tmp_path / "tiny-shakespeare" / "input.txt").read_bytes() == CORPUS
    asked = len(shakespeare.requests)
    again = load_tiny_shakespeare(tmp_path, download=False, validation_fraction=0.5)
    assert len(shakespeare.requests) == asked and len(again.validation) == len(text) // 2


def test_tiny_shakespeare_resumes_an_interrupted_download(shakespeare, tmp_path):
    shakespeare.drop["input.txt"] = 40
    data = load_tiny_shakespeare(tmp_path, base_url=shakespeare.url, verbose=False)
    assert [r for _, r in shakespeare.requests] == [None, "bytes=40-"]
    assert data.tokenizer.decode(data.train) + data.tokenizer.decode(data.validation) == CORPUS.decode()


def test_tiny_shakespeare_with_a_wrong_digest_is_refused(shakespeare, tmp_path):
    shakespeare.files["input.txt"] = CORPUS.replace(b"speak", b"squeak")[: len(CORPUS)].ljust(len(CORPUS), b"!")
    with pytest.raises(ChecksumError, match="SHA-256") as info:
        load_tiny_shakespeare(tmp_path, base_url=shakespeare.url, verbose=False)
    assert str(tmp_path / "tiny-shakespeare" / "input.txt") in str(info.value)
    assert not (tmp_path / "tiny-shakespeare" / "input.txt").exists()
    with pytest.raises(DownloadError, match="download=False"):
        load_tiny_shakespeare(tmp_path / "empty", download=False)


def test_the_pinned_digest_is_the_published_one():
    (remote,) = datasets.FILES["tiny-shakespeare"]
    # TensorFlow Datasets, tensorflow_datasets/url_checksums/tiny_shakespeare.txt
    assert (remote.name, remote.size) == ("input.txt", 1115394)
    assert remote.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert datasets.MIRRORS["tiny-shakespeare"][0].startswith("https://raw.githubusercontent.com/karpathy/char-rnn/")


def test_tiny_shakespeare_from_your_own_copy(tmp_path, capsys):
    own = tmp_path / "own"
    own.mkdir()
    (own / "input.txt").write_bytes(b"To be, or not to be")  # not the published file: used as it is
    data = load_tiny_shakespeare(path=own, validation_fraction=0.2)
    assert data.tokenizer.decode(data.train) + data.tokenizer.decode(data.validation) == "To be, or not to be"
    assert "not compared with the published SHA-256 digest" in capsys.readouterr().err
    (own / "input.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(datasets.DataFormatError, match="is not UTF-8 text"):
        load_tiny_shakespeare(path=own, verbose=False)


def test_pydoc_topics_are_padded_windows_of_their_topic():
    from pydoc_data import topics

    (X, y), (X_test, y_test) = load_pydoc_topics(num_classes=3, max_length=20, seed=1, train_per_class=40,
                                                 test_per_class=10)
    assert X.shape == (120, 20) and X_test.shape == (30, 20) and X.dtype == y.dtype == np.int64
    assert np.bincount(y).tolist() == [40] * 3 and np.bincount(y_test).tolist() == [10] * 3
    lengths = (X > 0).sum(axis=1)
    assert lengths.min() >= 5 and lengths.max() <= 20
    # right-padded: every row is its characters, then zeros only
    assert ((X > 0) == (np.arange(20) < lengths[:, None])).all()
    tokenizer = load_pydoc_text().tokenizer
    for row, label in zip(X, y, strict=True):
        text = tokenizer.decode(row[row > 0] - 1)
        assert text in topics.topics[["specialnames", "compound", "types"][label]]
    again = load_pydoc_topics(num_classes=3, max_length=20, seed=1, train_per_class=40, test_per_class=10)
    np.testing.assert_array_equal(again[0][0], X)
    assert not np.array_equal(load_pydoc_topics(num_classes=3, max_length=20, seed=2, train_per_class=40,
                                                test_per_class=10)[0][0], X)


def test_pydoc_topics_test_windows_come_from_held_out_blocks():
    from pydoc_data import topics

    (X, y), (X_test, y_test) = load_pydoc_topics(num_classes=2, max_length=30, min_length=30, test_per_class=20)
    tokenizer = load_pydoc_text().tokenizer
    for rows, labels, held_out in ((X[:50], y[:50], False), (X_test, y_test, True)):
        for row, label in zip(rows, labels, strict=True):
            text = topics.topics[["specialnames", "compound"][label]]
            start = text.index(tokenizer.decode(row - 1))  # windows of 30 characters are unique in these topics
            assert start // 240 == (start + 29) // 240  # inside one block of 8 * max_length
            assert (start // 240 % 5 == 4) == held_out


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"num_classes": 1}, ValueError, "num_classes must be an int >= 2, got 1"),
    ({"num_classes": 2.0}, TypeError, "num_classes must be an int"),
    ({"num_classes": 10_000}, ValueError, "num_classes must be at most"),
    ({"max_length": 0}, ValueError, "max_length must be an int >= 1, got 0"),
    ({"max_length": 8, "min_length": 9}, ValueError, "min_length must be <= max_length=8, got 9"),
    ({"test_every": 1}, ValueError, "test_every must be an int >= 2, got 1"),
    ({"max_length": 10_000}, ValueError, "has no training block of 80000 characters"),
])
def test_pydoc_topics_reject_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_pydoc_topics(**kwargs)
