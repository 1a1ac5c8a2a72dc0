"""The command line: its start-up (``--help`` without NumPy), Ctrl-C at any moment of it, verbosity, and
``minidl train DATASET`` end to end on small files in the real formats served from 127.0.0.1."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_minidl(args: list[str], extra_path: Path | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    """``python -m minidl ARGS`` (or ``python -c CODE``) with this checkout first on the path."""
    path = [str(extra_path)] if extra_path else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "minidl", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "cifar10", "--help"],
                                  ["digits", "--help"]])
def test_help_imports_neither_numpy_nor_tqdm_nor_scikit_learn(argv):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['minidl', *{argv!r}]\n"
        "try:\n    runpy.run_module('minidl', run_name='__main__')\n"
        "except SystemExit as exit_:\n    assert exit_.code == 0, exit_.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'tqdm', 'sklearn', 'scipy', 'pandas'}))\n"
    )
    done = run_minidl([], code=code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: minidl" in done.stdout


def test_import_minidl_imports_no_heavy_module():
    done = run_minidl([], code="import sys, minidl; print(sorted({m.split('.')[0] for m in sys.modules} & "
                               "{'numpy', 'sklearn', 'tqdm'}))")
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.skipif(os.name == "nt", reason="needs POSIX signals")
@pytest.mark.parametrize("module", ["sklearn", "numpy"])
def test_ctrl_c_while_start_up_imports_run_exits_130_with_one_line(tmp_path, module):
    """A real SIGINT arrives while ``module`` is being imported (a stand-in that signals its own process)."""
    stand_in = tmp_path / module
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n")
    done = run_minidl(["digits", "--epochs", "1"], extra_path=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "minidl: interrupted\n"
    assert done.stdout == ""


def test_verbose_0_prints_only_the_two_result_lines(capsys):
    assert main(["digits", "--epochs", "1", "--batch-size", "64", "--verbose", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("train: 1437 images, 1 epochs in ") and lines[1].startswith("test accuracy: ")


def test_training_options_have_help_text(capsys):
    with pytest.raises(SystemExit):
        main(["digits", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--epochs EPOCHS passes over the training images", "--batch-size BATCH_SIZE images per optimizer",
                   "--lr LR learning rate (default: the recipe's)"):
        assert option in out


def fake_mnist(n_train: int = 40, n_test: int = 20):
    def load_mnist(data_dir=None, *, download=True, verbose=True, **kwargs):
        rng = np.random.default_rng(0)
        return ((rng.random((n_train, 1, 28, 28), dtype=np.float32), np.arange(n_train) % 10),
                (rng.random((n_test, 1, 28, 28), dtype=np.float32), np.arange(n_test) % 10))
    return load_mnist


def test_mnist_command_trains_lenet_with_its_recipe(monkeypatch, capsys):
    from minidl import datasets

    monkeypatch.setitem(datasets.LOADERS, "mnist", fake_mnist())
    assert main(["mnist", "--epochs", "1", "--verbose", "1"]) == 0
    out = capsys.readouterr().out
    assert "recipe: --optimizer sgd --lr 0.05 --momentum 0.9 --epochs 1 --batch-size 64" in out
    assert "train: 40 images, 1 epochs in " in out and "on 20 images" in out.splitlines()[-1]


def test_mnist_command_reports_a_failed_download_in_one_line(monkeypatch, capsys):
    from minidl import datasets
    from minidl.download import DownloadError

    def offline(*args, **kwargs):
        raise DownloadError("mnist: train-images-idx3-ubyte.gz is not in /nowhere/mnist and downloads are off")

    monkeypatch.setitem(datasets.LOADERS, "mnist", offline)
    assert main(["mnist", "--no-download", "--data-dir", "/nowhere"]) == 1
    assert capsys.readouterr().err == ("minidl: error: mnist: train-images-idx3-ubyte.gz is not in /nowhere/mnist and "
                                       "downloads are off\n")


def test_mnist_help_lists_lenet_and_its_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["mnist", "--help"])
    out = capsys.readouterr().out
    assert "--preset {lenet}" in out and "lenet (default): --optimizer sgd --lr 0.05 --momentum 0.9 --epochs 8" in out


# ``minidl train DATASET``: small files in the real formats, served from 127.0.0.1 (tests/data_server.py).

@pytest.fixture
def served(monkeypatch):
    """``serve(name, files)``: ``files`` become data set ``name``'s pinned files, its only mirror a local server."""
    from data_server import FileServer, remote_files

    from minidl import datasets

    servers = []

    def serve(name: str, files: dict[str, bytes]) -> FileServer:
        server = FileServer(files).__enter__()
        servers.append(server)
        monkeypatch.setitem(datasets.FILES, name, remote_files(files))
        monkeypatch.setitem(datasets.MIRRORS, name, [server.url])
        return server

    yield serve
    for server in servers:
        server.__exit__(None, None, None)


def result_lines(out: str) -> list[str]:
    """The two result lines without the training time (which differs between runs)."""
    train, test = out.splitlines()[-2:]
    return [train.split(" in ")[0], test]


def test_train_fashion_mnist_downloads_then_trains_offline_from_the_cache(served, tmp_path, capsys):
    from data_server import mnist_files

    files, _ = mnist_files(n_train=48, n_test=16, seed=2)
    server = served("fashion-mnist", files)
    argv = ["train", "fashion-mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--verbose", "0"]
    assert main(argv) == 0
    downloaded = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == sorted(files)
    assert result_lines(downloaded)[0] == "train: 48 images, 1 epochs" and "on 16 images" in downloaded
    asked = len(server.requests)
    assert main([*argv, "--no-download"]) == 0
    assert len(server.requests) == asked  # the cache, not the network
    assert result_lines(capsys.readouterr().out) == result_lines(downloaded)  # same data, same seed


def test_train_fashion_mnist_uses_its_own_lenet_recipe(served, tmp_path, capsys):
    from data_server import mnist_files

    from minidl import recipes

    served("fashion-mnist", mnist_files(n_train=8, n_test=4)[0])
    assert main(["train", "fashion-mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--verbose", "1"]) == 0
    fashion = recipes.DATASET_RECIPES[("fashion-mnist", "lenet")]
    assert fashion.epochs > recipes.RECIPES["lenet"].epochs and fashion.schedule == "cosine"
    assert (f"recipe: --optimizer sgd --lr {fashion.lr} --momentum {fashion.momentum} --epochs 1 "
            f"--batch-size {fashion.batch_size} --schedule cosine --seed 0") in capsys.readouterr().out


@pytest.mark.parametrize("preset", ["cifar_resnet", "cifar_vgg"])
def test_train_cifar10_end_to_end(served, tmp_path, capsys, preset):
    from data_server import cifar_archive

    archive, _ = cifar_archive(records_per_batch=8, seed=3)
    served("cifar10", {"cifar-10-binary.tar.gz": archive})
    assert main(["train", "cifar10", "--preset", preset, "--data-dir", str(tmp_path), "--epochs", "1",
                 "--batch-size", "16", "--verbose", "1"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "cifar10" / "cifar-10-binary.tar.gz").read_bytes() == archive
    assert "Sequential: input (None, 3, 32, 32)" in out  # the summary: the model takes CIFAR's images
    assert result_lines(out)[0] == "train: 40 images, 1 epochs" and out.rstrip().endswith("on 8 images")


def test_train_cifar10_with_no_download_and_nothing_cached_says_where_to_put_the_file(served, tmp_path, capsys):
    from data_server import cifar_archive

    server = served("cifar10", {"cifar-10-binary.tar.gz": cifar_archive(records_per_batch=1)[0]})
    assert main(["train", "cifar10", "--data-dir", str(tmp_path), "--no-download"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("minidl: error: could not use 1 data file(s) of cifar10")
    assert "Traceback" not in captured.err
    assert str(tmp_path / "cifar10" / "cifar-10-binary.tar.gz") in captured.err and "--no-download" in captured.err
    assert server.requests == [] and captured.out == ""


def test_train_offline_stops_at_the_first_refused_connection(monkeypatch, tmp_path, capsys):
    from data_server import closed_port_url

    from minidl import datasets

    monkeypatch.setitem(datasets.MIRRORS, "fashion-mnist", [closed_port_url()])
    assert main(["train", "fashion-mnist", "--data-dir", str(tmp_path), "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minidl: error: could not get 4 data file(s)") and "Traceback" not in err
    assert err.count("no connection") == 1 and err.count("not tried: offline") == 3


def test_a_malformed_cached_file_is_one_error_line(served, tmp_path, capsys):
    from data_server import mnist_files

    files, _ = mnist_files(n_train=4, n_test=2)
    files["t10k-labels-idx1-ubyte.gz"] = b"not gzip"  # pinned as it is: the digest matches, the format does not
    served("mnist", files)
    for name, payload in files.items():
        (tmp_path / "mnist").mkdir(exist_ok=True)
        (tmp_path / "mnist" / name).write_bytes(payload)
    assert main(["mnist", "--data-dir", str(tmp_path), "--no-download"]) == 1
    err = capsys.readouterr().err
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    assert err.startswith(f"minidl: error: {bad} is not a valid gzip file") and err.count("\n") == 1, err


def test_an_unwritable_data_dir_is_one_error_line(served, tmp_path, capsys):
    from data_server import mnist_files

    served("mnist", mnist_files(n_train=4, n_test=2)[0])
    (tmp_path / "file").write_text("a file, not a directory")
    assert main(["mnist", "--data-dir", str(tmp_path / "file"), "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minidl: error: ") and str(tmp_path / "file") in err and err.count("\n") == 1, err


@pytest.mark.parametrize("argv, message", [
    (["train", "cifar10", "--preset", "lenet"],
     "argument --preset: lenet takes 1x28x28 images, cifar10's are 3x32x32; the presets for cifar10 are "
     "cifar_resnet, cifar_vgg"),
    (["train", "fashion-mnist", "--preset", "digits_cnn"],
     "digits_cnn takes 1x8x8 images, fashion-mnist's are 1x28x28; the presets for fashion-mnist are lenet"),
    (["digits", "--preset", "cifar_vgg"], "the presets for digits are blog_cnn, digits_cnn, digits_resnet, digits_gru"),
    (["train", "mnist", "--preset", "resnet50"], "no preset is called 'resnet50'; the presets for mnist are lenet"),
    (["train", "imagenet"], "invalid choice: 'imagenet'"),
    (["train"], "the following arguments are required: DATASET"),
    (["train", "digits", "--data-dir", "/tmp"], "unrecognized arguments: --data-dir"),
    (["train", "cifar10", "--faithful"], "unrecognized arguments: --faithful"),
])
def test_train_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_help_lists_every_data_set_with_its_presets_and_recipes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for name in ("digits", "mnist", "fashion-mnist", "cifar10"):
        assert f"  {name}: " in out
    assert "    cifar_resnet (default): --optimizer sgd --lr 0.1 --momentum 0.9 --epochs 30 --batch-size 128" in out
    assert "    lenet (default): --optimizer sgd --lr 0.05 --momentum 0.9 --epochs 15 --batch-size 64 " \
           "--schedule cosine" in out  # Fashion-MNIST's recipe


def test_train_cifar10_help_lists_only_its_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "cifar10", "--help"])
    out = capsys.readouterr().out
    assert "--preset {cifar_resnet,cifar_vgg}" in out and "--data-dir" in out and "--no-download" in out
    assert "  cifar_vgg: --optimizer adam --lr 0.002 --epochs 30 --batch-size 128 --schedule cosine" in out
    assert "lenet" not in out and "--faithful" not in out


def test_digits_and_mnist_are_aliases_of_train(capsys):
    from minidl.cli import build_parser

    parser = build_parser()
    for alias, extra in (("digits", ["--faithful"]), ("mnist", ["--no-download", "--data-dir", "/d"])):
        options = ["--epochs", "3", "--seed", "2", *extra]
        short, long = vars(parser.parse_args([alias, *options])), vars(parser.parse_args(["train", alias, *options]))
        assert short.pop("command") == alias and long.pop("command") == "train"
        assert short == long and short["dataset"] == alias
    outs = []
    for argv in (["digits"], ["train", "digits"]):
        assert main([*argv, "--epochs", "1", "--batch-size", "64", "--verbose", "0"]) == 0
        outs.append(result_lines(capsys.readouterr().out))
    assert outs[0] == outs[1]


def test_every_data_set_has_a_loader_and_a_default_preset_that_fits():
    from minidl import datasets, recipes
    from minidl.cli import ALIASES, DATASETS

    assert set(DATASETS) == set(datasets.LOADERS) | {"pydoc-topics"} and set(ALIASES) <= set(DATASETS)
    for name, data in DATASETS.items():
        assert data.default in recipes.presets_for(data.shape)
        assert data.downloads == (name in datasets.FILES)


@pytest.mark.parametrize("option, target, message", [
    ("--report", "a-file", "--report: cannot create the directory"),
    ("--export", "missing-dir/model.onnx", "--export: cannot write in the directory"),
    ("--export", ".", "is a directory, expected a file name such as model.onnx"),
])
def test_unusable_report_and_export_paths_fail_before_training(option, target, message, tmp_path, monkeypatch,
                                                               capsys):
    pytest.importorskip("onnx") if option == "--export" else pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("a file where the report's directory would go")
    assert main(["digits", "--epochs", "1", "--verbose", "0", option, target]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing trained: the error comes first
    assert captured.err.startswith("minidl: error: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_train_pydoc_topics_reports_test_accuracy_like_the_image_data_sets(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "pydoc-topics: which of 4 pydoc help topics a window of 16-64 characters comes from" in out
    assert "rows of 64 token ids text_cnn (default): --optimizer adam --lr 0.002" in out
    argv = ["train", "pydoc-topics", "--preset", "text_lstm", "--epochs", "1", "--verbose", "0", "--report",
            str(tmp_path)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("train: 2000 windows, 1 epochs in ") and lines[1].startswith("test accuracy: ")
    assert lines[1].endswith(" on 400 windows")
    assert float(lines[1].split()[2]) > 0.3  # chance is 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png", "history.png", "report.md"]
    with pytest.raises(SystemExit):
        main(["train", "pydoc-topics", "--preset", "digits_gru"])
    assert ("argument --preset: digits_gru takes 1x8x8 images, pydoc-topics's are rows of 64 token ids; the presets "
            "for pydoc-topics are text_cnn, text_lstm") in capsys.readouterr().err


def test_export_of_a_model_that_cannot_be_exported_fails_before_training(capsys, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from minidl.export.registry import ONNX_EXPORTERS
    from minidl.layers import Embedding

    lookup = ONNX_EXPORTERS.lookup

    def without_embedding(layer):  # as if Embedding had no exporter: the refusal must come before training
        if isinstance(layer, Embedding):
            raise TypeError("no ONNX exporter for layer 'Embedding' (test)")
        return lookup(layer)

    monkeypatch.setattr(ONNX_EXPORTERS, "lookup", without_embedding)
    status = main(["train", "pydoc-topics", "--epochs", "1", "--verbose", "0", "--export", str(tmp_path / "m.onnx")])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == "" and not (tmp_path / "m.onnx").exists()
    assert captured.err.startswith("minidl: error: --export: no ONNX exporter for layer 'Embedding'")


def test_export_of_a_text_classifier_names_the_symbolic_length(capsys, tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    status = main(["train", "pydoc-topics", "--epochs", "1", "--export", str(path)])
    assert status == 0 and path.exists()
    assert f"exported: {path} (ONNX opset 13; input 'input' (N, T), output 'output' probabilities)" in capsys.readouterr().out
