"""minidl.generation.generate: greedy and seeded sampling from tiny hand-built causal models."""

import numpy as np
import pytest

from minidl import Sequential
from minidl.generation import generate, next_token_logits
from minidl.layers import Embedding

V = 5


def bigram_model(logits: np.ndarray, window: int = 4) -> Sequential:
    """A causal model whose logits at each step are ``logits[token at that step]`` (an Embedding of width V)."""
    model = Sequential([Embedding(len(logits), logits.shape[1])], input_shape=(window,), seed=0, dtype="float64")
    model.layers[0].weight.data[...] = logits
    return model


def successor_logits() -> np.ndarray:
    """Token i is followed by token (i + 1) % V with logit 5, every other token with logit 0."""
    return 5.0 * np.roll(np.eye(V), 1, axis=1)


def test_greedy_follows_the_most_likely_successor_past_the_window():
    model = bigram_model(successor_logits(), window=4)
    out = generate(model, np.array([2]), max_new_tokens=9, temperature=0)
    assert out.tolist() == [2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert out.dtype == np.int64


def test_short_context_reads_the_last_real_step_not_the_padding():
    model = bigram_model(successor_logits(), window=6)
    logits = next_token_logits(model, np.array([[3, 1]]))
    assert logits.shape == (1, V)
    assert logits[0].argmax() == 2  # after token 1, not after the padding id 0


def test_sequential_generate_is_generate():
    model = bigram_model(np.zeros((V, V)))
    np.testing.assert_array_equal(model.generate(np.array([1, 2]), 6, temperature=0.7, top_k=3, seed=2),
                                  generate(model, np.array([1, 2]), 6, temperature=0.7, top_k=3, seed=2))


def test_batch_of_prompts_and_top_k_one_is_greedy():
    model = bigram_model(successor_logits())
    prompts = np.array([[0, 1], [4, 4]])
    greedy = generate(model, prompts, max_new_tokens=3, temperature=0)
    assert greedy.tolist() == [[0, 1, 2, 3, 4], [4, 4, 0, 1, 2]]
    sampled = generate(model, prompts, max_new_tokens=3, temperature=5.0, top_k=1, seed=1)
    assert np.array_equal(sampled, greedy)


def test_same_seed_same_tokens_other_seed_other_tokens():
    model = bigram_model(np.zeros((V, V)))  # uniform: every sequence equally likely
    a = generate(model, np.array([0]), max_new_tokens=40, seed=3)
    b = generate(model, np.array([0]), max_new_tokens=40, seed=3)
    c = generate(model, np.array([0]), max_new_tokens=40, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampling_frequencies_follow_the_tempered_softmax():
    logits = np.tile(np.log([0.1, 0.2, 0.3, 0.4, 1e-9]), (V, 1))
    model = bigram_model(logits)
    draws = generate(model, np.zeros((20_000, 1), dtype=np.int64), max_new_tokens=1, temperature=0.5, seed=0)[:, 1]
    expected = np.array([0.1, 0.2, 0.3, 0.4, 1e-9]) ** 2
    expected /= expected.sum()
    assert np.abs(np.bincount(draws, minlength=V) / len(draws) - expected).max() < 0.015
    top2 = generate(model, np.zeros((2_000, 1), dtype=np.int64), max_new_tokens=1, top_k=2, seed=0)[:, 1]
    assert set(np.unique(top2)) == {2, 3}


@pytest.mark.parametrize("kwargs, error, words", [
    ({"prompt_tokens": np.array([0.5])}, TypeError, "integer token ids"),
    ({"prompt_tokens": np.zeros((1, 0), dtype=int)}, ValueError, "L >= 1"),
    ({"prompt_tokens": np.zeros((1, 1, 1), dtype=int)}, ValueError, "shape (L,) or (N, L)"),
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens must be >= 0"),
    ({"temperature": -0.1}, ValueError, "temperature must be finite"),
    ({"temperature": float("nan")}, ValueError, "temperature must be finite"),
    ({"top_k": 0}, ValueError, "top_k must be >= 1"),
    ({"seed": "zero"}, TypeError, "seed must be an int"),
])
def test_bad_arguments_are_named(kwargs, error, words):
    args = {"prompt_tokens": np.array([1]), "max_new_tokens": 2, **kwargs}
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        generate(bigram_model(successor_logits()), **args)


def test_unbuilt_or_image_models_are_refused():
    with pytest.raises(ValueError, match="not built"):
        generate(Sequential([Embedding(V, V)]), np.array([1]), 1)
    with pytest.raises(ValueError, match="token ids"):
        generate(Sequential([Embedding(V, V)], input_shape=(2, 3)), np.array([1]), 1)
