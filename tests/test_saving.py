"""Save/load: exact round trips, atomic writes, and a clear ValueError for every bad file."""

import json
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import Sequential, saving
from minidl.data import load_digits
from minidl.inputs import prepare_inputs
from minidl.layers import Conv2D, Dense, Flatten, Layer, MaxPool2D, Parameter, ReLU, SoftmaxCE
from minidl.presets import blog_cnn


class SavingTestScale(Layer):
    """A user-defined layer with a parameter: ``y = x * gain`` per feature."""

    def __init__(self, init: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.init = float(init)

    def get_config(self):
        return {"init": self.init}

    def create_parameters(self, input_shape, rng, dtype):
        self.gain = Parameter(np.full(input_shape, self.init, dtype=dtype) + rng.standard_normal(input_shape).astype(dtype))

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return x * self.gain.data

    def backward(self, grad_out):
        self.gain.grad[...] = (grad_out * self._x).sum(axis=0)
        return grad_out * self.gain.data


class Unsaveable(Layer):
    def get_config(self):
        return {"table": np.arange(3)}

    def forward(self, x, training=False):
        return x

    def backward(self, grad_out):
        return grad_out


@pytest.fixture(scope="module")
def digits():
    X_train, X_test, y_train, _ = load_digits()
    return X_train[:256], y_train[:256], X_test[:64]


def trained_blog_cnn(digits, dtype="float32", seed=3) -> Sequential:
    X, y, _ = digits
    model = blog_cnn(seed=seed, dtype=dtype)
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    return model


def assert_same_model(a: Sequential, b: Sequential, X: np.ndarray) -> None:
    assert [layer.to_config() for layer in a.layers] == [layer.to_config() for layer in b.layers]
    assert repr(a.loss) == repr(b.loss)
    assert (a.input_shape, a.seed, a.dtype) == (b.input_shape, b.seed, b.dtype)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and np.array_equal(sa[k], sb[k]), k
    assert [p.trainable for p in a.parameters()] == [p.trainable for p in b.parameters()]
    x = prepare_inputs(a, X, "X")  # the layers' outputs
    assert np.array_equal(a.forward(x), b.forward(x))  # bit for bit


def write_raw(path, header, arrays) -> None:
    """A hand-made file in minidl's layout, to test what the loader does with it."""
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, __minidl__=blob, **arrays)


def read_raw(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(arrays.pop("__minidl__").tobytes()), arrays


# -- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, digits, dtype):
    model = trained_blog_cnn(digits, dtype=dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = minidl.load(path)
    assert_same_model(model, loaded, digits[2])
    assert repr(loaded) == repr(model)
    assert loaded.evaluate(*digits[:2]) == model.evaluate(*digits[:2])


def test_round_trip_keeps_every_constructor_option_frozen_layers_and_user_layers(tmp_path):
    model = Sequential(
        [
            Conv2D(3, (2, 3), stride=(1, 2), padding="same", use_bias=False, name="first"),
            ReLU(),
            MaxPool2D(3, stride=1, padding=1),
            Conv2D(2, 3, padding=(1, 0), trainable=False),
            Flatten(),
            SavingTestScale(0.5),
            Dense(5, use_bias=True),
            SoftmaxCE(),
        ],
        input_shape=(2, 7, 6),
        seed=[1, 2],
        dtype="float64",
    )
    path = tmp_path / "custom.npz"
    model.save(path)
    loaded = minidl.load(path)
    X = np.random.default_rng(0).random((4, 2, 7, 6))
    assert_same_model(model, loaded, X)
    assert loaded.layers[0].name == "first" and not loaded.layers[3].trainable


@st.composite
def random_models(draw):
    """A random valid stack: Conv2D, maybe ReLU and MaxPool2D, Flatten, Dense, maybe SoftmaxCE."""
    padding = draw(st.sampled_from([0, 1, (0, 1), "same", "valid"]))
    layers = [Conv2D(draw(st.integers(1, 3)), draw(st.integers(1, 3)), stride=draw(st.integers(1, 2)),
                     padding=padding, use_bias=draw(st.booleans()), trainable=draw(st.booleans()))]
    if draw(st.booleans()):
        layers.append(ReLU())
    if draw(st.booleans()):
        layers.append(MaxPool2D(draw(st.integers(1, 2))))
    layers += [Flatten(), Dense(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        layers.append(SoftmaxCE())
    input_shape = (draw(st.integers(1, 2)), draw(st.integers(3, 6)), draw(st.integers(3, 6)))
    seed = draw(st.none() | st.integers(0, 2**63) | st.lists(st.integers(0, 2**32), min_size=1, max_size=3))
    try:
        return Sequential(layers, input_shape=input_shape, seed=seed, dtype=draw(st.sampled_from(["float32", "float64"])))
    except ValueError:
        assume(False)


@given(model=random_models(), batch=st.integers(1, 3))
def test_any_model_round_trips_exactly(tmp_path_factory, model, batch):
    path = tmp_path_factory.getbasetemp() / "property.npz"  # overwritten by every example
    model.save(path)
    X = np.random.default_rng(0).standard_normal((batch, *model.input_shape)).astype(model.dtype)
    assert_same_model(model, minidl.load(path), X)


def test_model_without_a_loss_round_trips(tmp_path):
    model = Sequential([Flatten(), Dense(3)], input_shape=(2, 2), seed=None)
    model.save(tmp_path / "m")
    X = np.random.default_rng(1).random((3, 2, 2)).astype("float32")
    assert_same_model(model, minidl.load(tmp_path / "m"), X)


def test_file_is_a_plain_npz_with_a_json_header(tmp_path, digits):
    model = trained_blog_cnn(digits)
    model.save(tmp_path / "m.npz")
    header, arrays = read_raw(tmp_path / "m.npz")
    assert header["format"] == "minidl.Sequential" and header["format_version"] == 3
    assert header["minidl_version"] == minidl.__version__
    assert header["input_shape"] == [1, 8, 8] and header["seed"] == 3 and header["dtype"] == "float32"
    assert header["layers"] == [json.loads(json.dumps(layer.to_config())) for layer in model.layers]
    assert header["loss"] == {"class": "SoftmaxCE", "config": {"ignore_index": -100, "name": "SoftmaxCE"}}
    assert header["state"] == {k: {"shape": list(a.shape), "dtype": "float32"} for k, a in model.state_dict().items()}
    assert all(np.array_equal(arrays[k], a) for k, a in model.state_dict().items())


# -- paths ----------------------------------------------------------------------------------
class FsPath:
    def __init__(self, path):
        self.path = path if isinstance(path, bytes) else str(path)

    def __fspath__(self):
        return self.path


@pytest.mark.parametrize("make_path", [str, pathlib.Path, FsPath], ids=["str", "Path", "PathLike"])
def test_path_types_and_no_suffix_is_added(tmp_path, make_path):
    model = blog_cnn(seed=0)
    model.save(make_path(tmp_path / "model"))
    assert os.listdir(tmp_path) == ["model"]  # written exactly where asked: no ".npz" appended
    assert_same_model(model, minidl.load(make_path(tmp_path / "model")), np.zeros((1, 1, 8, 8), "float32"))


def test_bad_paths(tmp_path):
    model = blog_cnn(seed=0)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        model.save(3)
    with pytest.raises(TypeError, match="text path"):
        minidl.load(FsPath(b"/tmp/x"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "dir.npz")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        model.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        minidl.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError, match="is a directory, expected a minidl model file"):
        minidl.load(tmp_path)


def test_unbuilt_model_and_unsaveable_config_raise_before_writing(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        Sequential([Flatten(), Dense(2)]).save(tmp_path / "a")
    with pytest.raises(TypeError, match=r"layer 1 \(Unsaveable\).*not JSON-serialisable"):
        Sequential([Flatten(), Unsaveable()], input_shape=(2,)).save(tmp_path / "b")
    assert os.listdir(tmp_path) == []


def test_a_class_shadowed_in_the_registry_cannot_be_saved(tmp_path):
    def make():
        class SavingTestShadow(Layer):
            def forward(self, x, training=False):
                return x

        return SavingTestShadow

    first, _second = make(), make()  # the second definition takes the registry's name
    with pytest.raises(ValueError, match="layer registry maps 'SavingTestShadow'"):
        Sequential([first()], input_shape=(2,)).save(tmp_path / "m")


# -- atomic writes --------------------------------------------------------------------------
def half_write_then(exc):
    def savez(file, *args, **kwds):
        file.write(b"PK\x03\x04" + b"\x00" * 500)
        raise exc

    return savez


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["OSError", "Ctrl-C"])
def test_a_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, digits, exc):
    good = trained_blog_cnn(digits)
    path = tmp_path / "model.npz"
    good.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez", half_write_then(exc))
    with pytest.raises(type(exc)):
        blog_cnn(seed=99).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    assert_same_model(good, minidl.load(path), digits[2])


def test_a_failed_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    blog_cnn(seed=0).save(path)
    before = path.read_bytes()

    def fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        blog_cnn(seed=1).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]


def test_data_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else None))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(src).startswith(".model.npz.") and str(dst) == str(tmp_path / "model.npz")))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    blog_cnn(seed=0).save(tmp_path / "model.npz")
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[1] == ("replace", True)
    if os.path.exists("/proc/self/fd"):
        assert events[0][1] is False and events[2][1] is True  # the file first, then its directory


def test_overwriting_replaces_the_file_and_new_files_follow_the_umask(tmp_path, digits):
    path = tmp_path / "model.npz"
    blog_cnn(seed=0).save(path)
    newer = trained_blog_cnn(digits)
    newer.save(path)
    assert_same_model(newer, minidl.load(path), digits[2])
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_saving_through_a_symlink_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.npz"
    blog_cnn(seed=0).save(target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    newer = blog_cnn(seed=1)
    newer.save(link)
    assert link.is_symlink() and os.listdir(tmp_path / "real") == ["model.npz"]
    assert_same_model(newer, minidl.load(target), np.ones((1, 1, 8, 8), "float32"))


def test_a_process_killed_mid_save_leaves_the_old_file(tmp_path):
    """The process dies (no cleanup, no exception handling) halfway through writing the new file."""
    path = tmp_path / "model.npz"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from minidl.presets import blog_cnn
        blog_cnn(seed=5).save({str(path)!r})
        def savez(file, *args, **kwds):
            file.write(b"PK\\x03\\x04" + b"\\x00" * 1000)
            file.flush()
            os._exit(17)
        np.savez = savez
        blog_cnn(seed=6).save({str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert_same_model(blog_cnn(seed=5), minidl.load(path), np.ones((2, 1, 8, 8), "float32"))
    strays = [f for f in os.listdir(tmp_path) if f != "model.npz"]
    assert len(strays) == 1 and strays[0].startswith(".model.npz.") and strays[0].endswith(".tmp")


# -- bad files ------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path, digits):
    model = trained_blog_cnn(digits)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


@pytest.mark.parametrize("keep", [0, 3, 10, 100, 0.5, -22, -1])
def test_truncated_file(saved, tmp_path, keep):
    _, path = saved
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data) if keep < 0 else keep
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[:n])
    expected = "truncated or corrupt" if n >= 4 else "not a minidl model file"
    with pytest.raises(ValueError, match=f"cannot load '{bad}': .*{expected}"):
        minidl.load(bad)


@pytest.mark.slow
def test_every_flipped_byte_is_detected_or_harmless(saved, tmp_path, digits):
    """No single corrupted byte anywhere in the file loads different weights silently."""
    model, path = saved
    data = path.read_bytes()
    expected = model.state_dict()
    bad = tmp_path / "flipped.npz"
    detected = 0
    for i in range(0, len(data), 7):  # every 7th byte keeps it quick; each part of the layout is hit
        corrupt = bytearray(data)
        corrupt[i] ^= 0xFF
        bad.write_bytes(corrupt)
        try:
            state = minidl.load(bad).state_dict()
        except ValueError as err:
            assert f"cannot load '{bad}'" in str(err)
            detected += 1
            continue
        assert all(np.array_equal(state[k], expected[k]) for k in expected), f"byte {i} changed the weights silently"
    assert detected > 0.8 * (len(data) / 7)  # only timestamps and similar slack are harmless


def test_header_corrupted_to_invalid_json(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez(f, __minidl__=np.frombuffer(b'{"format": "minidl.Sequ', dtype=np.uint8))
    with pytest.raises(ValueError, match="header is not valid JSON"):
        minidl.load(path)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: p.write_text("hello, I am a text file\n"), "not a minidl model file \\(not an .npz archive\\)"),
        (lambda p: np.save(open(p, "wb"), np.arange(4)), "a single .npy array"),
        (lambda p: np.savez(open(p, "wb"), weights=np.ones(3)), "no '__minidl__' header"),
        (lambda p: zipfile.ZipFile(p, "w").writestr("readme.txt", "hi"), "no '__minidl__' header"),
        (lambda p: np.savez(open(p, "wb"), __minidl__=np.array("text")), "header is not UTF-8 JSON bytes"),
        (lambda p: write_raw(p, {"format": "keras"}, {}), "not a minidl model file \\(format 'keras'"),
        (lambda p: write_raw(p, [1, 2], {}), "not a minidl model file \\(format \\[1, 2\\]"),
    ],
    ids=["text", "npy", "npz-without-header", "other-zip", "string-header", "other-format", "json-list"],
)
def test_not_a_minidl_file(tmp_path, write, message):
    path = tmp_path / "thing.npz"
    write(path)
    with pytest.raises(ValueError, match=f"cannot load '{path}': .*{message}"):
        minidl.load(path)


class Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_executes_code_from_the_file(tmp_path):
    marker = tmp_path / "pwned"
    for name, write in [
        ("pickle.npz", lambda f: pickle.dump(Boom(str(marker)), f)),
        ("objects.npz", lambda f: np.savez(f, __minidl__=np.array([Boom(str(marker))], dtype=object))),
    ]:
        path = tmp_path / name
        with open(path, "wb") as f:
            write(f)
        assert not marker.exists()
        with pytest.raises(ValueError, match=f"cannot load '{path}'"):
            minidl.load(path)
        assert not marker.exists()


def test_newer_format_version(saved):
    _, path = saved
    header, arrays = read_raw(path)
    header["format_version"] = 99
    write_raw(path, header, arrays)
    with pytest.raises(ValueError, match="format version 99 .* reads versions up to 3: upgrade minidl"):
        minidl.load(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h.update(dtype="int8"), "'dtype' entry is missing or invalid: 'int8'"),
        (lambda h: h.pop("layers"), "'layers' entry is missing or invalid"),
        (lambda h: h.update(seed="zero"), "'seed' entry is missing or invalid"),
        (lambda h: h.update(format_version="1"), "invalid format_version '1'"),
        (lambda h: h.update(format_version=True), "invalid format_version True"),
        (lambda h: h["layers"][0].update({"class": "Evil"}), "layer 0 cannot be rebuilt: .*unknown layer class 'Evil'"),
        (lambda h: h["layers"][0]["config"].update(filters=-1), "layer 0 cannot be rebuilt: .*filters must be a positive int"),
        (lambda h: h["layers"][0]["config"].update(oops=1), "layer 0 cannot be rebuilt: .*oops"),
        (lambda h: h.update(input_shape=[1, 2, 2]), "the saved architecture does not build: layer 0 \\(Conv2D\\)"),
    ],
    ids=["dtype", "no-layers", "seed", "version-type", "version-bool", "unknown-class", "bad-arg", "unknown-arg", "bad-input-shape"],
)
def test_invalid_header(saved, edit, message):
    _, path = saved
    header, arrays = read_raw(path)
    edit(header)
    write_raw(path, header, arrays)
    with pytest.raises(ValueError, match=f"cannot load '{path}': .*{message}"):
        minidl.load(path)


def test_weights_of_a_different_architecture(saved, tmp_path):
    """The header says 4 filters, the arrays come from a model with 8: names the parameter and both shapes."""
    _, path = saved
    header, _ = read_raw(path)
    other = blog_cnn(num_filters=8, seed=0).state_dict()
    header["state"] = {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in other.items()}
    write_raw(path, header, other)
    with pytest.raises(
        ValueError,
        match=r"weights do not fit the saved architecture: parameter '0.weight' has shape \(4, 1, 3, 3\) in the "
        r"architecture but \(8, 1, 3, 3\) in the file; .*'4.weight' has shape \(36, 10\) .* \(72, 10\)",
    ):
        minidl.load(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h, a: a.pop("4.bias"), r"do not match the header's manifest: missing \['4.bias'\]"),
        (lambda h, a: a.update(extra=np.ones(2)), r"do not match the header's manifest: missing \[\], unlisted \['extra'\]"),
        (lambda h, a: a.update({"4.bias": a["4.bias"][:5]}), r"array '4.bias' is float32 \(5,\), but the header lists"),
        (lambda h, a: a.update({"4.bias": a["4.bias"].astype("float64")}), r"array '4.bias' is float64 \(10,\)"),
        (
            lambda h, a: (a.update({"4.bias": a["4.bias"].astype("float64")}), h["state"]["4.bias"].update(dtype="float64")),
            r"'4.bias' is float64 in the file but float32 in the architecture",
        ),
        (lambda h, a: (a.pop("4.bias"), h["state"].pop("4.bias")), r"missing from the file: \['4.bias'\]"),
    ],
    ids=["missing-array", "extra-array", "shape", "dtype", "dtype-in-manifest", "missing-parameter"],
)
def test_arrays_that_disagree_with_the_header(saved, edit, message):
    _, path = saved
    header, arrays = read_raw(path)
    edit(header, arrays)
    write_raw(path, header, arrays)
    with pytest.raises(ValueError, match=message):
        minidl.load(path)


# -- load_weights ---------------------------------------------------------------------------
def test_load_weights_into_the_same_architecture(saved, digits):
    model, path = saved
    other = blog_cnn(seed=42)
    optimizer_params = other.parameters()
    assert other.load_weights(path) == saving.LoadResult([], [], [])
    assert all(p is q for p, q in zip(optimizer_params, other.parameters()))  # in place: optimizers keep working
    assert np.array_equal(other.predict_proba(digits[2]), model.predict_proba(digits[2]))


def test_load_weights_builds_an_unbuilt_model(saved, digits):
    model, path = saved
    fresh = Sequential([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(10), SoftmaxCE()], seed=7)
    fresh.load_weights(path)
    assert fresh.input_shape == (1, 8, 8)
    assert np.array_equal(fresh.predict_proba(digits[2]), model.predict_proba(digits[2]))


def test_load_weights_with_different_shapes_names_the_parameter_and_both_shapes(saved):
    _, path = saved
    wider = blog_cnn(num_filters=8, seed=0)
    before = wider.state_dict()
    with pytest.raises(
        ValueError,
        match=rf"load_weights: '{path}' does not fit the model: parameter '0.weight' has shape \(8, 1, 3, 3\) in the "
        r"model but \(4, 1, 3, 3\) in the file; parameter '0.bias' has shape \(8,\) .* \(4,\) in the file; .*strict=False",
    ):
        wider.load_weights(path)
    after = wider.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # strict: all or nothing


def test_load_weights_non_strict_loads_what_matches(saved):
    model, path = saved
    wider = blog_cnn(num_filters=8, seed=0)
    before = wider.state_dict()
    result = wider.load_weights(path, strict=False)
    assert result == saving.LoadResult([], [], ["0.weight", "0.bias", "4.weight"])
    after = wider.state_dict()
    assert np.array_equal(after["4.bias"], model.state_dict()["4.bias"])
    assert not np.array_equal(after["4.bias"], before["4.bias"])
    assert all(np.array_equal(after[k], before[k]) for k in result.mismatched_keys)


def test_load_weights_missing_and_unexpected_entries(saved):
    _, path = saved
    no_conv_bias = blog_cnn(seed=0, faithful=True)
    with pytest.raises(ValueError, match=r"in the file but not in the model: \['0.bias'\]"):
        no_conv_bias.load_weights(path)
    assert no_conv_bias.load_weights(path, strict=False) == saving.LoadResult([], ["0.bias"], [])

    with_bias = blog_cnn(seed=0)
    no_conv_bias.save(path)
    with pytest.raises(ValueError, match=r"missing from the file: \['0.bias'\]"):
        with_bias.load_weights(path)
    assert with_bias.load_weights(path, strict=False) == saving.LoadResult(["0.bias"], [], [])


def test_load_weights_casts_to_the_models_dtype(saved):
    model, path = saved
    double = blog_cnn(seed=0, dtype="float64")
    double.load_weights(path)
    for k, a in model.state_dict().items():
        assert double.state_dict()[k].dtype == np.float64
        assert np.array_equal(double.state_dict()[k], a.astype(np.float64))


def test_load_weights_into_an_unbuilt_model_that_cannot_take_the_saved_input(saved):
    _, path = saved
    with pytest.raises(ValueError, match=r"cannot be built for the input shape \(1, 8, 8\) saved in .*kernel"):
        Sequential([Conv2D(2, 9), Flatten(), Dense(10)]).load_weights(path)


def test_an_archive_entry_that_is_not_an_array(saved):
    _, path = saved
    header, arrays = read_raw(path)
    del arrays["4.bias"]
    write_raw(path, header, arrays)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("4.bias", b"not an array")
    with pytest.raises(ValueError, match="entry '4.bias' of the archive is not a .npy array"):
        minidl.load(path)


def test_load_weights_rejects_bad_files_like_load(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match=f"cannot load '{path}': the .npz archive is truncated or corrupt"):
        blog_cnn().load_weights(path)
