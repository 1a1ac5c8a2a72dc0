"""`minidl digits --report DIR`: the five pictures and report.md of a short run."""

import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from minidl.cli import main  # noqa: E402
from minidl.report import PICTURES  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("preset, epochs", [("blog_cnn", 2), ("digits_cnn", 1)])
def test_digits_report_writes_the_pictures_and_the_page(preset, epochs, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["digits", "--preset", preset, "--epochs", str(epochs), "--verbose", "0", "--report", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    accuracy = re.search(r"test accuracy: (\d\.\d{4})", printed).group(1)
    assert f"report: {out / 'report.md'} and 5 pictures" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted([*PICTURES, "report.md"])
    for name in PICTURES:
        image = Image.open(out / name)
        assert image.format == "PNG" and min(image.size) >= 150
        assert np.asarray(image.convert("L"), dtype=float).var() > 300, f"{name} looks blank"
    page = (out / "report.md").read_text(encoding="utf-8")
    assert f"Made by `python -m minidl {' '.join(argv)}`." in page
    assert f"- preset: `{preset}`" in page and f"--epochs {epochs} " in page and "--seed 0`" in page
    assert f"**test accuracy: {accuracy}** on 360 images" in page
    assert "| epoch | loss | accuracy | val_loss | val_accuracy | lr |" in page
    epoch_table = page[page.index("## Per epoch"):page.index("## Per class")]
    assert re.findall(r"^\| (\d+) \| \d\.\d{4} \|", epoch_table, re.M) == [str(e) for e in range(1, epochs + 1)]
    classes = re.findall(r"^\| (\d) \| (\d\.\d{4}) \| (\d\.\d{4}) \|", page[page.index("## Per class"):], re.M)
    assert [c for c, _, _ in classes] == [str(i) for i in range(10)]
    assert "| macro avg |" in page and "| weighted avg |" in page
    for name in PICTURES:
        assert f"]({name})" in page


@pytest.mark.slow
def test_report_without_matplotlib_stops_before_training(tmp_path):
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named " + repr(name))
sys.meta_path.insert(0, Block())
from minidl.cli import main
sys.exit(main(["digits", "--report", {str(tmp_path / "r")!r}]))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 2
    assert 'pip install "minidl[plot]"' in run.stderr
    assert "train:" not in run.stdout and not (tmp_path / "r").exists()
