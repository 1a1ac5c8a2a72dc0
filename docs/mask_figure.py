"""Draw docs/images/masks.png, the picture of docs/sequences.md's "Masks": ``python docs/mask_figure.py``.

Every panel is computed by minidl's own layers on one padded batch of token ids, not drawn by hand:
the mask is ``Embedding(mask_zero=True).compute_mask``; the GRU's outputs and the state it returns;
one head of ``MultiHeadAttention``'s weights; the weight ``GlobalAvgPool1D`` gives each step (its
gradient); and the size of ``SoftmaxCE``'s gradient at each position. ``panels()`` returns the
numbers, which tests/test_mask_figure.py checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "docs" / "images" / "masks.png"

#: Four sequences of 6, 3, 8 and 1 tokens, right-padded with 0 to T = 8.
IDS = np.array([[5, 2, 7, 3, 9, 4, 0, 0],
                [8, 1, 6, 0, 0, 0, 0, 0],
                [3, 3, 9, 2, 5, 7, 1, 6],
                [4, 0, 0, 0, 0, 0, 0, 0]])


def panels(ids: np.ndarray = IDS, seed: int = 0) -> dict[str, np.ndarray]:
    """What each layer does with the mask of ``ids``, computed by the layers themselves.

    Returns ``mask`` (N, T); ``rnn`` the GRU's output norm per step (0 where padded) and ``rnn_last``
    the step whose output the GRU with ``return_sequences=False`` returns; ``attention`` the weights
    of one head for sequence 0 (T, T); ``pool`` the weight of each step in ``GlobalAvgPool1D``'s
    mean; ``loss`` the size of ``SoftmaxCE``'s gradient at each position.
    """
    sys.path.insert(0, str(ROOT))
    from minidl import Sequential
    from minidl.layers import GRU, Embedding, GlobalAvgPool1D, MultiHeadAttention, SoftmaxCE

    n, t = ids.shape
    embed = Sequential([Embedding(10, 4, mask_zero=True)], input_shape=(t,), input_dtype="int64", seed=seed,
                       dtype="float64")
    x = embed.forward(ids)
    mask = embed.layers[0].compute_mask(ids, None)
    gru_seq = Sequential([GRU(6, return_sequences=True)], input_shape=(t, 4), seed=seed, dtype="float64")
    gru_last = Sequential([GRU(6)], input_shape=(t, 4), seed=seed, dtype="float64")  # the same weights
    outputs = gru_seq.layers[0].forward(x, mask=mask)
    last = gru_last.layers[0].forward(x, mask=mask)
    rnn_last = np.array([int(np.flatnonzero(np.all(np.isclose(outputs[i], last[i]), axis=1))[-1]) for i in range(n)])
    attention = Sequential([MultiHeadAttention(num_heads=1)], input_shape=(t, 4), seed=seed, dtype="float64")
    attention.layers[0].forward(x, mask=mask)
    pool = GlobalAvgPool1D()
    pool.build((t, 4), dtype=np.float64)
    pool.forward(x, mask=mask)
    pool_weights = pool.backward(np.ones((n, 4)))[:, :, 0]  # d(mean)/d(step): 1/length at valid steps
    loss = SoftmaxCE()
    loss.build((t, 10), dtype=np.float64)
    logits = np.random.default_rng(seed).standard_normal((n, t, 10))
    _, grad = loss.loss_and_grad(logits, ids, mask)  # next-token style targets: the ids themselves
    return {"ids": ids, "mask": mask, "rnn": np.linalg.norm(outputs, axis=2), "rnn_last": rnn_last,
            "attention": attention.layers[0].last_attention[0, 0], "pool": pool_weights,
            "loss": np.linalg.norm(grad, axis=2)}


def draw(path: Path = PATH) -> Path:
    """Draw the six panels into ``path`` (PNG)."""
    from matplotlib.figure import Figure

    p = panels()
    ids, mask = p["ids"], p["mask"]
    n, t = ids.shape
    fig = Figure(figsize=(13.5, 7.6), layout="constrained")
    axes = fig.subplots(2, 3)
    padded = np.ma.masked_where(mask, np.ones_like(ids, dtype=float))

    def grid(ax, values, title, cmap, fmt, vmax=None):
        ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
        ax.imshow(padded, cmap="Greys", vmin=0, vmax=4, alpha=0.9, aspect="auto")  # padded cells greyed
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, fmt(value, i, j), ha="center", va="center", fontsize=9,
                    color="black" if not mask[i, j] or values[i, j] <= 0.6 * (vmax or values.max()) else "white")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(t), [str(j) for j in range(t)])
        ax.set_yticks(range(n), [f"seq {i}" for i in range(n)])
        ax.set_xlabel("step")

    grid(axes[0, 0], np.where(mask, 0.35, 0.0), "1. a padded batch of token ids (N=4, T=8)\n0 = padding", "Blues",
         lambda v, i, j: str(ids[i, j]), vmax=1)
    grid(axes[0, 1], mask.astype(float) * 0.5, "2. Embedding(mask_zero=True) makes the mask\nids != 0: True at real "
         "steps", "Greens", lambda v, i, j: "T" if mask[i, j] else "F", vmax=1)
    rnn = p["rnn"]
    grid(axes[0, 2], rnn, "3. GRU: padded steps are skipped (state carried,\noutput 0); ★ = the state it returns",
         "viridis", lambda v, i, j: ("★" if j == p["rnn_last"][i] else f"{v:.2f}"), vmax=rnn.max())
    ax = axes[1, 0]
    weights = p["attention"]
    ax.imshow(weights, cmap="viridis", vmin=0, vmax=weights.max())
    for (i, j), value in np.ndenumerate(weights):
        if not mask[0, j]:
            ax.text(j, i, "0", ha="center", va="center", fontsize=8, color="white")
    ax.set_title("4. MultiHeadAttention, seq 0: padded keys\n(steps 6, 7) get weight 0 from every query",
                 fontsize=10)
    ax.set_xlabel("key step")
    ax.set_ylabel("query step")
    ax.set_xticks(range(t))
    ax.set_yticks(range(t))
    grid(axes[1, 1], p["pool"], "5. GlobalAvgPool1D: each step's weight in the mean\n(1 / number of real steps)",
         "Oranges", lambda v, i, j: f"{v:.3g}", vmax=1.0)
    grid(axes[1, 2], p["loss"], "6. SoftmaxCE: the gradient's size per position\n(padded targets: none)", "Reds",
         lambda v, i, j: f"{v:.3f}", vmax=p["loss"].max())
    fig.suptitle("How a mask travels: Embedding(mask_zero=True) → recurrent layers, attention, pooling, the loss "
                 "(grey: padding)", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else PATH))
