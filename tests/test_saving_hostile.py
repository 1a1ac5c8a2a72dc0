"""Files made to hurt: ``minidl.load`` refuses each with a ValueError before allocating much.

Every test writes its hostile file itself, from a small saved model, and checks the message and
(with ``tracemalloc``, which sees NumPy's and zlib's allocations) that loading stayed within a
few megabytes although the file asks for far more.
"""

import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import minidl
from minidl import Sequential, archive
from minidl.layers import Conv2D, Dense, Flatten, ReLU, SoftmaxCE

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


def load_refused(path, match: str) -> int:
    """Load ``path``, expect ``ValueError`` naming it and matching ``match``; return the peak allocation."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as info:
            minidl.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"cannot load '{path}'" in str(info.value)
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
    lambda h: h.update(input_shape=[1, 3000, 3000]),                 # a huge input makes Dense's weights huge
], ids=["filters-1e12", "filters-4e6", "dense-units", "input-shape"])
def test_an_architecture_asking_for_huge_layers_is_refused_before_it_is_built(saved, tmp_path, edit):
    header = header_of(saved)
    edit(header)
    path = tmp_path / "huge-layer.npz"
    write_zip(path, with_header(saved, header))
    peak = load_refused(path, r"the saved architecture asks for more weights than the file's arrays hold: "
                              r"layer \d \((Conv2D|Dense)\) draws \d+ initial values at once \(shape \(\d+, \d+")
    assert peak < SMALL


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
    peak = load_refused(path, r"entry '__minidl__' of the archive inflates to \d+ bytes, more than the 4194304 bytes the header may take")
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
