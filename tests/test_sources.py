"""fit / evaluate / predict on memory-mapped arrays and on iterables of batches (minidl.sources)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from minidl import Sequential, sources
from minidl.callbacks import Callback
from minidl.layers import Conv2D, Dense, Flatten, ReLU, SoftmaxCE
from minidl.sources import ArraySource, IterableSource, MemmapSource


def make_model(seed=0, input_shape=(1, 6, 6)):
    return Sequential([Conv2D(3, 3), ReLU(), Flatten(), Dense(4), SoftmaxCE()], input_shape=input_shape, seed=seed)


def data(n=50, seed=0, shape=(1, 6, 6)):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 4, n)


def memmapped(tmp_path, X, name="X.npy"):
    np.save(tmp_path / name, X)
    return np.load(tmp_path / name, mmap_mode="r")


def test_a_memmap_trains_exactly_as_the_same_array_without_shuffling(tmp_path):
    X, y = data()
    a, b = make_model(), make_model()
    ha = a.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    hb = b.fit(memmapped(tmp_path, X), y, epochs=2, batch_size=8, shuffle=False, verbose=0,
               validation_data=(memmapped(tmp_path, X[:10], "V.npy"), y[:10]))
    assert ha["loss"] == hb["loss"] and ha["accuracy"] == hb["accuracy"]
    for p, q in zip(a.parameters(), b.parameters()):
        assert (p.data == q.data).all()
    assert a.evaluate(X, y) == b.evaluate(memmapped(tmp_path, X, "E.npy"), y)
    assert (b.predict_proba(memmapped(tmp_path, X, "P.npy"), batch_size=7) == b.predict_proba(X, batch_size=7)).all()


def test_memmap_shuffling_reads_blocks_in_random_order_and_sees_every_sample_once(tmp_path, monkeypatch):
    X = np.arange(100, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    model = Sequential([Flatten(), Dense(4), SoftmaxCE()], input_shape=(1, 2, 2), seed=0)
    bytes_per_sample = 4 * 4
    monkeypatch.setattr(sources, "MEMMAP_BLOCK_BYTES", 20 * bytes_per_sample)  # blocks of 20 samples (5 batches)
    source = MemmapSource(model, memmapped(tmp_path, X), np.arange(100) % 4, "X", "y")
    epoch = list(source.batches(4, shuffle=True, rng=np.random.default_rng(0)))
    ids = np.concatenate([xb[:, 0, 0, 0] for xb, _ in epoch]).astype(int)
    assert sorted(ids) == list(range(100)) and ids.tolist() != list(range(100))
    blocks = ids.reshape(5, 20) // 20  # each run of 20 samples comes from one block of the file
    assert all(len(set(row)) == 1 for row in blocks) and sorted(blocks[:, 0]) == [0, 1, 2, 3, 4]
    assert all((yb == xb[:, 0, 0, 0].astype(int) % 4).all() for xb, yb in epoch)  # labels travel with images
    again = np.concatenate([xb[:, 0, 0, 0] for xb, _ in source.batches(4, True, np.random.default_rng(0))])
    assert (again == ids).all()


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", [False, True])
def test_a_memmap_is_never_copied_whole(tmp_path, monkeypatch, shuffle):
    X, y = data(n=8000, shape=(1, 16, 16))  # 8 MB of images
    X_mm = memmapped(tmp_path, X)
    monkeypatch.setattr(sources, "MEMMAP_BLOCK_BYTES", 2**16)
    model = make_model(input_shape=(1, 16, 16))
    model.fit(X_mm[:64], y[:64], epochs=1, batch_size=32, verbose=0)  # warm up: lazily made buffers
    tracemalloc.start()
    try:
        model.fit(X_mm, y, epochs=1, batch_size=32, shuffle=shuffle, verbose=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 5, f"peak {peak:,} bytes for {X.nbytes:,} bytes of images"


def test_a_bad_value_in_a_memmap_is_named_by_its_batch(tmp_path):
    X, y = data(n=40)
    X[29, 0, 2, 3] = np.nan
    model = make_model()
    with pytest.raises(ValueError, match=r"X\[24:32\] contains 1 NaN or infinite value\(s\) \(first at index \(5, 0, 2, 3\)\)"):
        model.fit(memmapped(tmp_path, X), y, batch_size=8, shuffle=False, verbose=0)


def test_memmap_shape_and_label_errors_come_before_any_training(tmp_path):
    X, y = data(n=20)
    model = make_model()
    # The check reads one sample, and says so: "X has shape (1, 1, 6, 5)" misquoted a (20, 1, 6, 5) file.
    with pytest.raises(ValueError, match=r"X\[:1\] has shape \(1, 1, 6, 5\), but the model expects \(N, 1, 6, 6\)"):
        model.fit(memmapped(tmp_path, X[:, :, :, :5]), y, verbose=0)
    with pytest.raises(TypeError, match=r"X\[:1\] must be a numeric array, got an array of dtype complex"):
        model.fit(memmapped(tmp_path, X + 1j, "D.npy"), y, verbose=0)
    with pytest.raises(ValueError, match=r"y must have shape \(20,\)"):
        model.fit(memmapped(tmp_path, X, "B.npy"), y[:19], verbose=0)
    unbuilt = Sequential([Flatten(), Dense(4), SoftmaxCE()], seed=0)
    unbuilt.fit(memmapped(tmp_path, X, "C.npy"), y, verbose=0)  # the first sample builds the model
    assert unbuilt.input_shape == (1, 6, 6)


def batches_of(X, y, size):
    return [(X[s:s + size], y[s:s + size]) for s in range(0, len(X), size)]


class Reiterable:
    """A data set read afresh each epoch (like a keras.utils.Sequence); counts its passes."""

    def __init__(self, pairs):
        self.pairs, self.passes = pairs, 0

    def __len__(self):
        return len(self.pairs)

    def __iter__(self):
        self.passes += 1
        return iter(self.pairs)


def test_an_iterable_of_batches_trains_as_the_same_batches_from_an_array():
    X, y = data(n=48)
    a, b = make_model(), make_model()
    ha = a.fit(X, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    feed = Reiterable(batches_of(X, y, 8))
    hb = b.fit(feed, epochs=3, verbose=0)
    assert feed.passes == 3 and ha["loss"] == hb["loss"]
    assert a.evaluate(X, y, batch_size=5) == b.evaluate(iter(batches_of(X, y, 5)))
    assert (b.predict(iter([X[:10], X[10:]])) == b.predict(X)).all()  # bare X batches
    assert (b.predict(iter(batches_of(X, y, 7))) == b.predict(X)).all()  # pairs: the labels are ignored


def test_a_generator_is_shared_out_by_steps_per_epoch():
    X, y = data(n=64)
    seen = []

    def generate():
        for s in range(0, 64, 8):
            seen.append(s)
            yield X[s:s + 8], y[s:s + 8]

    class Sizes(Callback):
        def __init__(self):
            self.sizes = []

        def on_batch_end(self, step, logs):
            self.sizes.append(logs["size"])

    sizes = Sizes()
    history = make_model().fit(generate(), epochs=2, steps_per_epoch=4, callbacks=[sizes], verbose=0,
                               validation_data=Reiterable(batches_of(X, y, 16)))
    assert len(history["loss"]) == 2 and seen == list(range(0, 64, 8)) and sizes.sizes == [8] * 8
    assert "val_accuracy" in history
    with pytest.raises(ValueError, match="validation_data is an iterator, which is read once"):
        make_model().fit(X, y, epochs=2, verbose=0, validation_data=iter(batches_of(X, y, 16)))


def test_a_generator_that_runs_out_stops_training_with_a_warning():
    X, y = data(n=24)
    with pytest.warns(UserWarning, match=r"ran out of batches in epoch 2 after 2 step\(s\) \(3 planned\)"):
        history = make_model().fit(iter(batches_of(X, y, 8) + batches_of(X, y, 8)[:2]), epochs=2,
                                   steps_per_epoch=3, verbose=0)
    assert len(history["loss"]) == 1
    with pytest.warns(UserWarning, match="ran out of batches"):
        history = make_model().fit(iter(batches_of(X, y, 8)), epochs=3, verbose=0)  # no steps: one pass
    assert len(history["loss"]) == 1


def test_each_batch_of_an_iterable_is_checked():
    X, y = data(n=24)
    bad = batches_of(X, y, 8)
    bad[1] = (X[8:16, :, :5], y[8:16])
    with pytest.raises(ValueError, match=r"X batch 1: X has shape \(8, 1, 5, 6\)"):
        make_model().fit(iter(bad), verbose=0)
    bad[1] = (X[8:16], y[8:16] + 10)
    with pytest.raises(ValueError, match=r"X batch 1: y holds labels in \[10, 1[0-3]\]"):
        make_model().fit(iter(bad), verbose=0)
    bad[1] = X[8:16]
    with pytest.raises(ValueError, match=r"X batch 1 must be a tuple \(X_batch, y_batch\), got a ndarray"):
        make_model().fit(iter(bad), verbose=0)
    bad[1] = (X[8:16], y[8:15])  # was "... to match X batch 1: X, got (7,)"
    with pytest.raises(ValueError, match=r"^X batch 1: y must have shape \(8,\) to match X, got \(7,\)$"):
        make_model().fit(iter(bad), verbose=0)


@pytest.mark.parametrize("X, expected", [
    ({"images": np.zeros((500, 1, 6, 6))}, r"X must be a numeric array, got dict \{'images': array\(.{0,60}\}$"),
    ("digits.npy", r"X must be a numeric array, got str 'digits.npy'$"),
])
def test_what_is_not_an_array_is_quoted_in_a_line(X, expected):
    # A dict of arrays was quoted whole (thousands of characters); a file name as "an array of dtype <U10 and shape ()".
    with pytest.raises(TypeError, match=expected):
        make_model().fit(X, np.zeros(500, int), verbose=0)


def test_arguments_that_do_not_fit_the_data():
    X, y = data(n=16)
    model = make_model()
    with pytest.raises(ValueError, match="carries its labels: pass y=None"):
        model.fit(iter(batches_of(X, y, 8)), y, verbose=0)
    with pytest.raises(ValueError, match="steps applies to an iterable of batches"):
        model.fit(X, y, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="y is missing"):
        model.fit(X, verbose=0)
    with pytest.raises(ValueError, match=r"pairs as X \(a list is read as array data: pass iter\(X\) for one pass"):
        model.fit(batches_of(X, y, 8), verbose=0)  # a list of pairs is data, and the message says so
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        model.fit(iter(batches_of(X, y, 8)), steps_per_epoch=0, verbose=0)


def test_the_progress_bar_counts_samples_of_an_iterable(capsys):
    X, y = data(n=24)
    make_model().fit(iter(batches_of(X, y, 8)), verbose=1)
    assert "24sample" in capsys.readouterr().err.replace(" ", "")


def test_lists_and_arrays_are_still_data_not_batches():
    X, y = data(n=8)
    model = make_model()
    assert isinstance(sources.as_source(model, X.tolist(), y, "X", "y"), ArraySource)
    assert isinstance(sources.as_source(model, iter([(X, y)]), None, "X", "y"), IterableSource)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X.tolist(), y.tolist(), verbose=0)


def test_a_one_pass_iterator_as_validation_data_is_refused_before_training_when_it_is_read_each_epoch():
    X, y = data(n=16)
    model = make_model()
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"validation_data is an iterator, which is read once, but validation runs "
                                         r"after each of the 2 epochs"):
        model.fit(X, y, epochs=2, validation_data=iter(batches_of(X, y, 8)), verbose=0)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained
    history = model.fit(X, y, epochs=1, validation_data=iter(batches_of(X, y, 8)), verbose=0)  # one pass suffices
    assert "val_loss" in history.history
    history = model.fit(X, y, epochs=2, validation_data=Reiterable(batches_of(X, y, 8)), verbose=0)  # a pass each time
    assert len(history.history["val_loss"]) == 2


def test_a_bad_batch_of_a_generator_shared_over_epochs_names_the_epoch_step_and_item():
    X, y = data(n=40)
    batches = batches_of(X, y, 2)  # 20 batches: 10 steps an epoch for two epochs
    batches[13] = (X[26:28, :, :5], y[26:28])  # the 14th item: epoch 2, step 4
    with pytest.raises(ValueError, match=r"^X batch 3 \(epoch 2, step 4, item 14 of the iterator\): X has shape"):
        make_model().fit(iter(batches), epochs=2, steps_per_epoch=10, verbose=0)


def test_an_explicit_batch_size_with_an_iterable_of_batches_is_refused():
    X, y = data(n=24)
    model = make_model()
    for call in (lambda: model.fit(iter(batches_of(X, y, 8)), batch_size=7, verbose=0),
                 lambda: model.evaluate(iter(batches_of(X, y, 8)), batch_size=7),
                 lambda: model.predict(iter([X[:8], X[8:]]), batch_size=7),
                 lambda: model.predict_proba(iter([X[:8], X[8:]]), batch_size=7)):
        with pytest.raises(ValueError, match=r"batch_size=7 does not apply to X, an iterable of batches .*used as given"):
            call()
    model.fit(iter(batches_of(X, y, 8)), verbose=0)  # the default still works with iterables
    assert model.predict(iter([X[:8], X[8:]])).shape == (24,)
    assert set(model.evaluate(iter(batches_of(X, y, 8)))) >= {"loss", "accuracy"}


TRUNCATED_FIT = """
import os, sys
import numpy as np
from minidl import Sequential
from minidl.layers import Dense, Flatten, SoftmaxCE
path = sys.argv[1]
np.save(path, np.random.default_rng(0).random((4096, 64), dtype=np.float32))  # 1 MiB: many pages
X = np.load(path, mmap_mode="r")
os.truncate(path, 4096)  # the file shrinks under the map (another process rewrote it)
model = Sequential([Flatten(), Dense(4), SoftmaxCE()], input_shape=(64,), seed=0)
try:
    model.fit(X, np.zeros(4096, dtype=np.int64), batch_size=512, shuffle=False, verbose=0)
except OSError as err:
    print(err)
    sys.exit(3)
"""


def test_a_memmapped_file_truncated_after_load_is_an_error_naming_the_file_not_sigbus(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "X.npy"
    done = subprocess.run([sys.executable, "-c", TRUNCATED_FIT, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])  # not -SIGBUS
    assert f"memory-mapped file {path} is now 4096 bytes, but the map needs" in done.stdout
    assert "truncated or replaced after np.load" in done.stdout
