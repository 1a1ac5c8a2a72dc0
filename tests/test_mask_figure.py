"""docs/mask_figure.py: the picture of docs/sequences.md's "Masks" is computed by the layers, and says what they do."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load_script():
    spec = importlib.util.spec_from_file_location("mask_figure", DOCS / "mask_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_panels_show_what_each_layer_does_with_the_mask():
    p = load_script().panels()
    ids, mask = p["ids"], p["mask"]
    lengths = mask.sum(axis=1)
    np.testing.assert_array_equal(mask, ids != 0)
    assert np.all(p["rnn"][~mask] == 0) and np.all(p["rnn"][mask] > 0)  # padded steps output nothing
    np.testing.assert_array_equal(p["rnn_last"], lengths - 1)  # the state returned is the last real step's
    assert np.all(p["attention"][:, ~mask[0]] == 0)  # no query attends to a padded key
    np.testing.assert_allclose(p["attention"].sum(axis=1), 1)
    np.testing.assert_allclose(p["pool"], mask / lengths[:, None])  # the mean of the real steps
    assert np.all(p["loss"][~mask] == 0) and np.all(p["loss"][mask] > 0)  # padded targets add no gradient


def test_the_committed_picture_is_the_scripts_and_the_docs_show_it(tmp_path):
    pytest.importorskip("matplotlib")
    script = load_script()
    drawn = script.draw(tmp_path / "masks.png")
    assert drawn.stat().st_size > 20_000 and script.PATH.exists()
    assert "![" in (page := (DOCS / "sequences.md").read_text()) and "images/masks.png" in page
    assert "python docs/mask_figure.py" in page
