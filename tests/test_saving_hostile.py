"""Files made to hurt: ``minidl.load`` refuses each with a ValueError before allocating much.

Every test writes its hostile file itself, from a small saved model, and checks the message and
(with ``tracemalloc``, which sees NumPy's and zlib's allocations) that loading stayed within a
few megabytes although the file asks for far more.
"""

import json
import re
import tracemalloc
import zipfile

import numpy as np
import pytest

import minidl
from minidl import Sequential, archive, saving
from minidl.layers import (AvgPool2D, BatchNorm2D, Conv2D, Dense, Flatten, Identity, MaxPool2D, Parallel, ReLU,
                           SoftmaxCE)

#: What loading one of these files may allocate at its peak: the model itself is a few kilobytes.
SMALL = 4 << 20


def small_model() -> Sequential:
    return Sequential([Conv2D(4, 3), ReLU(), Flatten(), Dense(3), SoftmaxCE()], input_shape=(1, 8, 8), seed=0)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    small_model().save(path)
    return path


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def header_of(path) -> dict:
    with np.load(path) as z:
        return json.loads(z["__minidl__"].tobytes())


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    return buf.getvalue()


def write_zip(path, entries: dict[str, bytes], compression=zipfile.ZIP_STORED, per_entry=None) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data, compress_type=(per_entry or {}).get(name, compression))


def with_header(path, header: dict) -> dict[str, bytes]:
    entries = members(path)
    entries["__minidl__.npy"] = npy_bytes(np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    return entries


def peak_of(call):
    """``call()``'s result and the peak of what it allocated."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(call, match: str) -> tuple[ValueError, int]:
    """``call()``'s ``ValueError``, which must match ``match``, and the peak of what the call allocated."""
    def expect() -> ValueError:
        with pytest.raises(ValueError, match=match) as info:
            call()
        return info.value

    return peak_of(expect)


def load_refused(path, match: str) -> int:
    """Load ``path``, expect ``ValueError`` naming it and matching ``match``; return the peak allocation."""
    error, peak = refused(lambda: minidl.load(path), match)
    assert f"cannot load '{path}'" in str(error)
    return peak


# -- members the manifest does not declare -------------------------------------------------------
def test_an_extra_deflated_member_is_refused_without_inflating_it(saved, tmp_path):
    bomb = tmp_path / "bomb.npz"
    entries = members(saved) | {"extra.npy": npy_bytes(np.zeros(50 << 20, dtype=np.uint8))}  # 50 MB of zeros
    write_zip(bomb, entries, per_entry={"extra.npy": zipfile.ZIP_DEFLATED})
    assert bomb.stat().st_size < 200_000
    peak = load_refused(bomb, r"do not match the header's manifest: missing \[\], unlisted \['extra'\]")
    assert peak < SMALL


def test_a_declared_member_that_inflates_beyond_its_declared_shape_is_refused_before_inflating(saved, tmp_path):
    bomb = tmp_path / "bomb.npz"
    entries = members(saved)
    entries["3.bias.npy"] += bytes(50 << 20)  # trailing data after the array: 50 MB, deflated to ~50 kB
    write_zip(bomb, entries, per_entry={"3.bias.npy": zipfile.ZIP_DEFLATED})
    peak = load_refused(bomb, r"entry '3.bias' of the archive inflates to \d+ bytes, more than the 12 bytes its declared shape takes")
    assert peak < SMALL


def test_a_member_whose_npy_header_claims_a_huge_array_is_refused_before_allocating(saved, tmp_path):
    path = tmp_path / "huge.npz"
    header = header_of(saved)
    header["state"]["3.bias"]["shape"] = [10**9]  # the manifest and the .npy header agree; the data is 12 bytes
    entries = with_header(saved, header)
    entries["3.bias.npy"] = npy_bytes(np.zeros(3, np.float32)).replace(b"(3,)", b"(1000000000,)", 1)
    write_zip(path, entries)
    peak = load_refused(path, r"entry '3.bias' of the archive holds 12 bytes of data, but its declared float32 "
                              r"\(1000000000,\) takes 4000000000|not a plain .npy array")
    assert peak < SMALL


def test_members_compressed_otherwise_than_stored_or_deflated_are_refused(saved, tmp_path):
    path = tmp_path / "bz.npz"
    write_zip(path, members(saved), per_entry={"0.weight.npy": zipfile.ZIP_BZIP2})
    load_refused(path, r"entry '0.weight' of the archive uses compression method 12; only stored and deflated")


def test_a_zip_directory_that_claims_more_than_the_file_holds_is_refused(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    # The central directory's compressed size of the last member (offset 20 in its record) says 2 GB.
    record = data.rindex(b"PK\x01\x02")
    data[record + 20:record + 24] = (2 << 30).to_bytes(4, "little")
    path = tmp_path / "liar.npz"
    path.write_bytes(bytes(data))
    load_refused(path, r"truncated or corrupt")


def test_a_manifest_entry_with_a_bool_or_negative_dimension_is_refused(saved, tmp_path):
    for bad in ([True, 3], [-1, 3], [3.0], "3"):
        header = header_of(saved)
        header["state"]["3.bias"]["shape"] = bad
        path = tmp_path / "bad-manifest.npz"
        write_zip(path, with_header(saved, header))
        load_refused(path, r"the header's manifest entry for '3.bias' is invalid")


# -- architectures that ask for far more than the file holds ---------------------------------------
@pytest.mark.parametrize("edit", [
    lambda h: h["layers"][0]["config"].update(filters=10**12),       # would raise MemoryError
    lambda h: h["layers"][0]["config"].update(filters=4 * 10**6),    # would allocate ~300 MB, then be refused
    lambda h: h["layers"][3]["config"].update(units=10**7),          # Dense: 144 x 10**7 weights
    lambda h: h.update(input_shape=[1, 100, 100]),                   # a larger input makes Dense's weights larger
    lambda h: h.update(input_shape=[1, 3000, 3000]),                 # Dense's input alone outnumbers the arrays
], ids=["filters-1e12", "filters-4e6", "dense-units", "input-shape", "input-shape-huge"])
def test_an_architecture_asking_for_huge_layers_is_refused_before_it_is_built(saved, tmp_path, edit):
    header = header_of(saved)
    edit(header)
    path = tmp_path / "huge-layer.npz"
    write_zip(path, with_header(saved, header))
    peak = load_refused(path, r"the saved architecture asks for more than the file's arrays hold: "
                              r"layer \d \((Conv2D|Dense)\) (draws \d+ initial values at once \(shape \(\d+, \d+"
                              r"|builds Dense for a per-sample input of shape \(35952016,\))")
    assert peak < SMALL


# -- what building costs besides the drawn weights ------------------------------------------------
@pytest.mark.parametrize("pool", [MaxPool2D, AvgPool2D])
def test_a_pool_window_far_larger_than_its_input_costs_nothing_to_load(tmp_path, pool):
    """Building a pooling layer used to make its kh·kw window offsets: 317² ≈ 10⁵ Python tuples (~40 MB) here, for
    a file of a few hundred bytes, and 4·10⁸ for a window of 20001 (padding may reach half the window)."""
    path = tmp_path / "wide-window.npz"
    Sequential([pool(317, padding=158), Flatten(), Dense(3), SoftmaxCE()], input_shape=(1, 1, 1), seed=0).save(path)
    model, peak = peak_of(lambda: minidl.load(path))
    assert model.layers[0].pool_size == (317, 317) and model.output_shape == (3,)
    assert peak < SMALL


def test_a_layer_that_allocates_without_drawing_is_refused_in_the_shape_pass(saved, tmp_path):
    """BatchNorm2D makes four arrays of C (and two gradients) without drawing: the budget of draws cannot see
    them, the bound on every input dimension can (2·10⁶ channels: 48 MB before the file was refused)."""
    header = header_of(saved)
    header["input_shape"] = [2 * 10**6, 1, 1]
    header["layers"] = [BatchNorm2D().to_config(), *header["layers"][2:]]  # BatchNorm2D, Flatten, Dense, SoftmaxCE
    path = tmp_path / "wide-batchnorm.npz"
    write_zip(path, with_header(saved, header))
    peak = load_refused(path, r"the saved architecture asks for more than the file's arrays hold: layer 0 "
                              r"\(BatchNorm2D\) builds BatchNorm2D for a per-sample input of shape \(2000000, 1, 1\), "
                              r"which has a dimension over 66011 .*, while the arrays hold 475 values in all")
    assert peak < SMALL


def test_a_container_that_widens_its_input_is_bounded_at_every_layer_inside(saved, tmp_path):
    """The input (60000 channels) is within the bound; 40 identity branches concatenated make 2.4·10⁶ channels for
    the BatchNorm2D inside (58 MB before the file was refused)."""
    header = header_of(saved)
    header["input_shape"] = [60000, 1, 1]
    widen = Sequential([Parallel([Identity() for _ in range(40)]), BatchNorm2D()])
    header["layers"] = [widen.to_config(), *header["layers"][2:]]
    path = tmp_path / "widening.npz"
    write_zip(path, with_header(saved, header))
    peak = load_refused(path, r"layer 0 \(Sequential\) builds BatchNorm2D for a per-sample input of shape "
                              r"\(2400000, 1, 1\), which has a dimension over 66011")
    assert peak < SMALL


@pytest.mark.parametrize("depth", [15, 40])
def test_containers_nested_deeply_load_or_are_refused_by_the_json_bound(tmp_path, monkeypatch, depth):
    """Each nested container is three levels of JSON: 15 fit in the header's 64, 40 do not (never a RecursionError).
    ``save`` refuses to write the deeper one (issue 21, item 15); written anyway, ``load`` refuses it."""
    inner = Conv2D(2, 3)
    for _ in range(depth):
        inner = Sequential([inner])
    model = Sequential([inner, Flatten(), Dense(3), SoftmaxCE()], input_shape=(1, 8, 8), seed=0)
    path = tmp_path / "nested.npz"
    if depth == 15:
        model.save(path)
        weight = "0" + ".0" * 15 + ".weight"
        np.testing.assert_array_equal(minidl.load(path).state_dict()[weight], model.state_dict()[weight])
    else:
        with pytest.raises(ValueError, match="more than the 64 load reads"):
            model.save(path)
        monkeypatch.setattr(saving, "_check_loadable", lambda header, size: None)  # a file written otherwise
        model.save(path)
        load_refused(path, r"the '__minidl__' header nests lists and objects deeper than 64 levels")


# -- load_weights: the file chooses the input shape an unbuilt model is built for ---------------------
@pytest.mark.parametrize("input_shape, layers, match", [
    ([1, 600, 600], lambda: [Conv2D(4, 3), ReLU(), Flatten(), Dense(3), SoftmaxCE()],  # 4·598²·3 weights: 34 MB
     r"for that shape the model draws 4291248 initial values at once \(shape \(1430416, 3\)\), more than the file's "
     r"arrays hold \(475 values\); to load part of a file into a larger model, build the model first"),
    ([10**6, 1, 1], lambda: [BatchNorm2D(), Flatten(), Dense(3), SoftmaxCE()],  # 24 MB of BatchNorm2D, then 24 more
     r"a dimension over 66011, the values its arrays hold plus 65536"),
], ids=["dense-draws", "batchnorm-channels"])
def test_load_weights_builds_an_unbuilt_model_only_as_far_as_the_file_accounts_for(saved, tmp_path, input_shape,
                                                                                  layers, match):
    header = header_of(saved)
    header["input_shape"] = input_shape
    path = tmp_path / "big-input.npz"
    write_zip(path, with_header(saved, header))
    model = Sequential(layers(), seed=0)
    _, peak = refused(lambda: model.load_weights(path), rf"load_weights: the model cannot be built for the input "
                      rf"shape {re.escape(str(tuple(input_shape)))} saved in '{path}': {match}")
    assert peak < SMALL
    assert not model.built


def test_load_weights_builds_an_unbuilt_model_with_the_weights_a_plain_build_draws(saved):
    def layers():
        return [Conv2D(4, 3), ReLU(), Flatten(), Dense(5), SoftmaxCE()]

    plain = Sequential(layers(), input_shape=(1, 8, 8), seed=3)
    fresh = Sequential(layers(), seed=3)
    assert fresh.load_weights(saved, strict=False).mismatched_keys == ["3.weight", "3.bias"]
    np.testing.assert_array_equal(fresh.state_dict()["3.weight"], plain.state_dict()["3.weight"])
    np.testing.assert_array_equal(fresh.state_dict()["0.weight"], small_model().state_dict()["0.weight"])


def test_an_architecture_within_budget_but_of_other_shapes_is_refused_before_reading_the_arrays(saved, tmp_path):
    header = header_of(saved)
    header["layers"][0]["config"]["filters"] = 2  # fewer weights than declared: the shapes differ
    path = tmp_path / "other.npz"
    write_zip(path, with_header(saved, header))
    load_refused(path, r"parameter '0.weight' has shape \(2, 1, 3, 3\) in the architecture but \(4, 1, 3, 3\) "
                       r"in the file")


# -- the JSON header -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [65, 100_000], ids=["over-the-bound", "over-the-stack"])
def test_a_deeply_nested_header_is_refused_not_a_recursion_error(saved, tmp_path, depth):
    header = json.dumps(header_of(saved))
    nested = header[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    entries = members(saved)
    entries["__minidl__.npy"] = npy_bytes(np.frombuffer(nested.encode(), dtype=np.uint8))
    path = tmp_path / "deep.npz"
    write_zip(path, entries)
    load_refused(path, r"the '__minidl__' header nests lists and objects deeper than 64 levels")


def test_a_nesting_as_deep_as_the_bound_still_loads(saved, tmp_path):
    header = json.dumps(header_of(saved))
    nested = header[:-1] + ', "x": ' + "[" * 63 + "]" * 63 + "}"  # 64 levels with the header's own object
    entries = members(saved)
    entries["__minidl__.npy"] = npy_bytes(np.frombuffer(nested.encode(), dtype=np.uint8))
    path = tmp_path / "deep-enough.npz"
    write_zip(path, entries)
    assert minidl.load(path).input_shape == (1, 8, 8)


def test_a_header_larger_than_the_bound_is_refused_before_it_is_read(saved, tmp_path):
    entries = members(saved)
    padding = b" " * (archive.MAX_HEADER_BYTES + 1)
    entries["__minidl__.npy"] = npy_bytes(np.frombuffer(json.dumps(header_of(saved)).encode() + padding, np.uint8))
    path = tmp_path / "big-header.npz"
    write_zip(path, entries, compression=zipfile.ZIP_DEFLATED)
    peak = load_refused(path, r"entry '__minidl__' of the archive inflates to \d+ bytes, more than the 1048576 bytes "
                              r"the header may take")
    assert peak < SMALL


@pytest.mark.slow
def test_the_largest_header_allowed_costs_a_bounded_amount_to_decode(saved, tmp_path):
    """Empty lists are the JSON that costs most to decode (~20 bytes of Python objects a byte): the header bound
    (1 MiB, deflated to 4 kB here) keeps it near 20 MB; at the 4 MiB allowed before, ~110 MB."""
    header = header_of(saved)
    room = archive.MAX_HEADER_BYTES - len(json.dumps(header)) - 16
    header["x"] = [[]] * (room // 4)  # json.dumps writes "[], " for each
    path = tmp_path / "lists.npz"
    write_zip(path, with_header(saved, header), compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 50_000
    model, peak = peak_of(lambda: minidl.load(path))
    assert model.input_shape == (1, 8, 8)
    assert peak < 40 << 20


def test_an_architecture_of_more_layers_than_the_bound_is_refused_before_any_is_made(saved, tmp_path):
    """10⁵ parameterless layers fit in a 3 MB header (a few kB deflated) and took ~20 s and ~200 MB to make and
    build; counted inside containers too."""
    header = header_of(saved)
    relus = [ReLU().to_config()] * (saving.MAX_LAYERS - 4)  # with the model's own 4 (the loss is no layer): one over
    header["layers"] = [Sequential([ReLU()]).to_config(), *header["layers"]]
    header["layers"][0]["config"]["layers"] = relus
    path = tmp_path / "many.npz"
    write_zip(path, with_header(saved, header), compression=zipfile.ZIP_DEFLATED)
    peak = load_refused(path, rf"the architecture has {saving.MAX_LAYERS + 1} layers \(counting those inside "
                              rf"containers\), more than the {saving.MAX_LAYERS} a file may hold")
    assert peak < SMALL


def test_a_deflated_file_of_sound_content_still_loads(saved, tmp_path):
    """``np.savez_compressed``-style files are read too: the checks bound inflating, they do not forbid it."""
    path = tmp_path / "deflated.npz"
    write_zip(path, members(saved), compression=zipfile.ZIP_DEFLATED)
    for name, value in minidl.load(path).state_dict().items():
        np.testing.assert_array_equal(value, minidl.load(saved).state_dict()[name])


def test_a_file_holding_nan_weights_is_refused(saved, tmp_path):
    entries = members(saved)
    entries["0.weight.npy"] = npy_bytes(np.full((4, 1, 3, 3), np.nan, np.float32))
    path = tmp_path / "nan.npz"
    write_zip(path, entries)
    load_refused(path, r"'0.weight' holds 36 NaN or infinite value\(s\) of 36")
    with pytest.raises(ValueError, match=rf"load_weights: '{path}': .*'0.weight' holds 36 NaN"):
        small_model().load_weights(path)
