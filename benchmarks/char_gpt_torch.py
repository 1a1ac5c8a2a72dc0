"""Learning quality side by side: the ``char_gpt`` (or 2-layer char LSTM) preset in minidl and the same
network written in PyTorch, trained the same way on the same batches, compared by held-out loss.

    python benchmarks/char_gpt_torch.py                          # char_gpt, both frameworks, the full recipe
    python benchmarks/char_gpt_torch.py --model lstm --steps 300 --eval-every 50
    python benchmarks/char_gpt_torch.py --framework torch        # PyTorch only

Both sides read their architecture and recipe from one table, ``minidl.recipes.CHAR_GPT`` (or
``CHAR_LSTM``); options given here override it for both. The corpus is the standard library's
``pydoc_data.topics`` (``minidl.text.load_pydoc_text``: nothing is downloaded), its last 10% held
out. Every step draws ``batch_size`` random windows of ``context + 1`` characters of the training
part from one NumPy generator seeded by ``--seed``, the same windows for both frameworks; each
window's first ``context`` characters are the input and its last ``context`` the targets. Every
``--eval-every`` steps (and at the end) the held-out loss is the mean cross-entropy, in nats per
character, over ``--eval-windows`` fixed windows of the validation part (dropout off); bits per
character = nats / ln 2. Each framework starts from its own initialisation (PyTorch's defaults,
minidl's), as a user of either would; ``--init minidl`` starts the PyTorch model from minidl's
initialisation scheme instead (:func:`minidl_init`), which separates the frameworks from their defaults.

minidl is trained by its own pieces, one step being ``forward``, ``model.loss.loss_and_grad``,
``backward`` and ``Adam.step`` (what ``fit`` does), so that the two loops are the same line by line.
Threads: PyTorch uses ``--threads`` intra-op threads; minidl's BLAS the same (set
``OPENBLAS_NUM_THREADS`` before starting to pin it).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from minidl.recipes import CHAR_GPT, CHAR_LSTM
from minidl.text import load_pydoc_text

TABLES = {"gpt": CHAR_GPT, "lstm": CHAR_LSTM}


def batches(train: np.ndarray, context: int, batch_size: int, steps: int, seed: int):
    """``steps`` batches ``(x, y)`` of random windows: ``y`` is ``x`` shifted one character on."""
    rng = np.random.default_rng(seed)
    offsets = np.arange(context + 1)
    for _ in range(steps):
        starts = rng.integers(0, len(train) - context - 1, batch_size)
        windows = train[starts[:, None] + offsets]
        yield windows[:, :-1], windows[:, 1:]


def eval_windows(validation: np.ndarray, context: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` evenly spaced windows of the validation part: the same for every evaluation."""
    starts = np.linspace(0, len(validation) - context - 2, count).astype(np.int64)
    windows = validation[starts[:, None] + np.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


# -- PyTorch -------------------------------------------------------------------------------------------


def torch_model(kind: str, vocab: int, c: dict):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, d: int, heads: int, dropout: float, context: int) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attention = nn.MultiheadAttention(d, heads, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))
            self.register_buffer("future", torch.triu(torch.ones(context, context, dtype=torch.bool), 1))

        def forward(self, x):
            h = self.norm1(x)
            t = x.shape[1]
            x = x + self.attention(h, h, h, attn_mask=self.future[:t, :t], need_weights=False)[0]
            return x + self.mlp(self.norm2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d, context = int(c["dim"]), int(c["context"])
            self.embedding = nn.Embedding(vocab, d)
            self.positions = nn.Parameter(torch.zeros(context, d))
            nn.init.normal_(self.positions, std=0.02)
            self.blocks = nn.Sequential(*[Block(d, int(c["heads"]), c["dropout"], context)
                                          for _ in range(int(c["blocks"]))])
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab)

        def forward(self, x):
            h = self.embedding(x) + self.positions[: x.shape[1]]
            return self.head(self.norm(self.blocks(h)))

    class CharLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocab, int(c["dim"]))
            self.lstm = nn.LSTM(int(c["dim"]), int(c["units"]), num_layers=2, batch_first=True)
            self.head = nn.Linear(int(c["units"]), vocab)

        def forward(self, x):
            return self.head(self.lstm(self.embedding(x))[0])

    return GPT() if kind == "gpt" else CharLSTM()


def minidl_init(model) -> None:
    """minidl's initialisation in the PyTorch model: its Dense layers' He-normal weights
    (``N(0, 2 / fan_in)``, PyTorch's ``nn.Linear`` draws ``U(±1/√fan_in)``, 2.4 times narrower) and zero
    biases. The embeddings (``N(0, 1)``), the positions (``N(0, 0.02²)``) and the attention projections
    (Glorot-uniform) start alike in both already."""
    import torch
    from torch import nn

    attention = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and id(module) not in attention:
                module.weight.normal_(0.0, math.sqrt(2.0 / module.in_features))
                module.bias.zero_()
            elif id(module) in attention:
                nn.init.xavier_uniform_(module.weight)
                module.bias.zero_()


def train_torch(kind: str, vocab: int, c: dict, data, args) -> list[tuple[int, float]]:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = torch_model(kind, vocab, c)
    if args.init == "minidl":
        minidl_init(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=c["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    xv, yv = (torch.from_numpy(a) for a in eval_windows(data.validation, int(c["context"]), args.eval_windows))

    def held_out() -> float:
        model.eval()
        with torch.no_grad():
            loss = loss_fn(model(xv).reshape(-1, vocab), yv.reshape(-1)).item()
        model.train()
        return loss

    curve = []
    for step, (x, y) in enumerate(batches(data.train, int(c["context"]), int(c["batch_size"]), int(c["steps"]),
                                          args.seed), start=1):
        logits = model(torch.from_numpy(x))
        loss = loss_fn(logits.reshape(-1, vocab), torch.from_numpy(y).reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == int(c["steps"]):
            curve.append((step, held_out()))
            print(f"torch  step {step:5d}: train {loss.item():.4f}, held-out {curve[-1][1]:.4f} nats/char", flush=True)
    return curve


# -- minidl ----------------------------------------------------------------------------------------------


def train_minidl(kind: str, vocab: int, c: dict, data, args) -> list[tuple[int, float]]:
    from minidl import presets
    from minidl.optim import Adam
    from minidl.threads import blas_threads

    build = presets.char_gpt if kind == "gpt" else presets.char_lstm
    keys = ("context", "dim", "heads", "blocks", "dropout") if kind == "gpt" else ("context", "dim", "units")
    model = build(vocab, seed=args.seed, **{k: c[k] for k in keys})
    optimizer = Adam(model.parameters(), lr=c["lr"])
    xv, yv = eval_windows(data.validation, int(c["context"]), args.eval_windows)

    def held_out() -> float:
        return float(model.loss.loss_and_grad(model.forward(xv), yv)[0])

    curve = []
    with blas_threads():
        for step, (x, y) in enumerate(batches(data.train, int(c["context"]), int(c["batch_size"]),
                                              int(c["steps"]), args.seed), start=1):
            loss, grad = model.loss.loss_and_grad(model.forward(x, training=True), y)
            model.backward(grad)
            optimizer.step()
            if step % args.eval_every == 0 or step == int(c["steps"]):
                curve.append((step, held_out()))
                print(f"minidl step {step:5d}: train {float(loss):.4f}, held-out {curve[-1][1]:.4f} nats/char",
                      flush=True)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(TABLES), default="gpt")
    parser.add_argument("--framework", choices=("both", "minidl", "torch"), default="both")
    for key in sorted({*CHAR_GPT, *CHAR_LSTM}):
        kind = float if key in ("lr", "dropout") else int
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, help="default: the table's")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-windows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", choices=("torch", "minidl"), default="torch",
                        help="the PyTorch model's initialisation: PyTorch's defaults, or minidl's (minidl_init)")
    args = parser.parse_args()
    table = TABLES[args.model]
    c = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in table.items()}
    data = load_pydoc_text()
    vocab = data.tokenizer.vocab_size
    print(f"{args.model}: {c}, vocabulary {vocab}, {len(data.train)} / {len(data.validation)} characters, "
          f"seed {args.seed}, {args.threads} thread(s)")
    curves = {}
    for name, train in (("minidl", train_minidl), ("torch", train_torch)):
        if args.framework in ("both", name):
            start = time.perf_counter()
            curves[name] = train(args.model, vocab, c, data, args)
            print(f"{name}: {time.perf_counter() - start:.1f} s")
    print("\n| step | " + " | ".join(f"{n} nats/char | {n} bits/char" for n in curves) + " |")
    print("|---:|" + "---:|---:|" * len(curves))
    for i, (step, _) in enumerate(next(iter(curves.values()))):
        cells = " | ".join(f"{curve[i][1]:.4f} | {curve[i][1] / math.log(2):.4f}" for curve in curves.values())
        print(f"| {step} | {cells} |")
    if len(curves) == 2:
        gap = curves["minidl"][-1][1] - curves["torch"][-1][1]
        print(f"\nfinal held-out loss, minidl - torch: {gap:+.4f} nats/char")


if __name__ == "__main__":
    main()
