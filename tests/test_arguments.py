"""minidl.arguments: the shared argument checks convert good values and quote bad ones."""

import numpy as np
import pytest

from minidl.arguments import as_float, as_int, as_pair, as_shape, check_bool


def test_good_values_are_converted():
    assert check_bool(np.bool_(True), "flag", "L") is True
    assert as_int(np.int64(3), "n", minimum=1) == 3 and type(as_int(np.int64(3), "n")) is int
    assert as_float(np.float32(0.5), "lr", "SGD", low=0.0, high=1.0) == 0.5
    assert as_pair(3, "stride", "Conv2D") == (3, 3) and as_pair([2, 1], "stride", "Conv2D") == (2, 1)
    assert as_shape(np.array([1, 8, 8]), "Dense") == (1, 8, 8)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: check_bool("no", "shuffle", "fit"), TypeError, r"fit: shuffle must be a bool, got 'no'"),
        (lambda: as_int(True, "epochs"), TypeError, r"^epochs must be an int, got True"),
        (lambda: as_int(0, "batch_size", "fit", minimum=1), ValueError, r"fit: batch_size must be >= 1, got 0"),
        (lambda: as_float("0.1", "lr", "SGD", low=0.0), TypeError, r"SGD: lr must be a number, got '0.1'"),
        (lambda: as_float(0.0, "lr", "SGD", low=0.0, low_inclusive=False), ValueError, r"in \(0.0, inf\), got 0.0"),
        (lambda: as_float(1.0, "momentum", "SGD", low=0.0, high=1.0), ValueError, r"in \[0.0, 1.0\), got 1.0"),
        (lambda: as_float(float("nan"), "eps", "Adam", low=0.0), ValueError, r"Adam: eps must be finite"),
        (lambda: as_float(10**400, "lr", "SGD", low=0.0), ValueError, r"an int of 1329 bits, too large for a float"),
        (lambda: as_pair((1, 2, 3), "kernel_size", "Conv2D"), TypeError, r"an int or a pair of ints, got \(1, 2, 3\)"),
        (lambda: as_pair(0, "stride", "Conv2D"), ValueError, r"Conv2D: stride must be >= 1, got 0"),
        (lambda: as_shape((1, True), "Dense"), TypeError, r"Dense: input shape must be a tuple of ints"),
        (lambda: as_shape((2.5,), "Dense"), ValueError, r"must hold positive ints, got \(2.5,\)"),
        (lambda: as_shape((2**40, 2**40), "Dense"), ValueError, r"more than an int64 can count"),
        # beyond a float's range too: the size is quoted as a power of two
        (lambda: as_shape((10**400, 1), "Dense"), ValueError, r"about 2\*\*1328 values per sample, more than an int64"),
    ],
)
def test_bad_values_name_the_argument_and_quote_the_value(call, error, match):
    with pytest.raises(error, match=match):
        call()
