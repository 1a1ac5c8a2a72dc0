"""A tiny GPT on the standard library's help text: train, measure, generate, look at the attention.

    python examples/tiny_gpt.py [--steps N] [--context T] [--attention attention.png]

``presets.char_gpt`` (a pre-norm decoder-only transformer, ``minidl.recipes.CHAR_GPT``) learns to
continue the text of ``pydoc_data.topics`` (every Python install has it). Training draws random
windows of the text (``minidl.language.train_language_model``); the held-out loss is in nats and
bits per character; ``model.generate`` samples a continuation; ``minidl.plot.attention`` draws
what each head of the first block looks at.
"""

from __future__ import annotations

import argparse
import math

from minidl import presets
from minidl.language import train_language_model
from minidl.recipes import CHAR_GPT
from minidl.text import load_pydoc_text


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=int(CHAR_GPT["steps"]))
    parser.add_argument("--context", type=int, default=int(CHAR_GPT["context"]))
    parser.add_argument("--batch-size", type=int, default=int(CHAR_GPT["batch_size"]))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attention", metavar="PNG", help="also draw the first block's attention there")
    args = parser.parse_args(argv)
    tokenizer, train, validation = data = load_pydoc_text()
    model = presets.char_gpt(tokenizer.vocab_size, seed=args.seed, context=args.context)
    curve = train_language_model(model, data, steps=args.steps, batch_size=args.batch_size, lr=CHAR_GPT["lr"],
                                 seed=args.seed, eval_every=max(1, args.steps // 4),
                                 report=lambda step, loss, held: print(f"step {step}: held-out {held:.4f} nats/char"))
    held_out = curve[-1][1]
    print(f"held-out loss {held_out:.4f} nats/char = {held_out / math.log(2):.4f} bits/char")
    prompt = "The \"for\" statement"
    text = tokenizer.decode(model.generate(tokenizer.encode(prompt), 200, temperature=0.8, seed=args.seed))
    print(text)
    if args.attention:
        from minidl import plot

        window = validation[:args.context]  # the model takes sequences of its own length (labelled up to 64)
        plot.attention(model, window, layer=0, tokenizer=tokenizer, path=args.attention)
        print(f"attention: {args.attention}")
    return {"held_out": held_out, "text": text}


if __name__ == "__main__":
    main()
