"""The grounding frontier's arithmetic, by hand: bias grid, biased accuracy, best CF at matched ID."""

from __future__ import annotations

import numpy as np
import pytest

from unprior.eval.frontier import answer_prefix, bias_grid, biased_accuracy, colour_token_ids, frontier_summary


def test_bias_grid_is_inclusive_and_holds_zero():
    grid = bias_grid(-15, 15, 0.25)
    assert len(grid) == 121 and grid[0] == -15 and grid[-1] == 15 and 0.0 in grid
    assert 0.0 in bias_grid(-1, 2, 0.7)  # 0 is added even when the step misses it
    assert np.all(np.diff(bias_grid(-1, 2, 0.7)) > 0)


def test_biased_accuracy_by_hand():
    # 3 colours; canonical colour is index 0 for every row
    scores = np.array([[0.0, -1.0, -3.0],   # truth 0 (canonical): right until b < -1
                       [0.0, -0.5, -3.0],   # truth 1: right once b < -0.5
                       [0.0, -2.0, -1.5]])  # truth 2: right once b < -1.5
    truth, canon = np.array([0, 1, 2]), np.array([0, 0, 0])
    acc = biased_accuracy(scores, truth, canon, np.array([-2.0, -1.25, -0.75, 0.0, 1.0]))
    np.testing.assert_allclose(acc, [2 / 3, 1 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert biased_accuracy(np.zeros((0, 3)), truth[:0], canon[:0], np.array([0.0])).tolist() == [0.0]


def test_frontier_summary_picks_best_cf_at_matched_id():
    biases = np.array([-2.0, -1.0, 0.0, 1.0])
    id_acc = np.array([0.80, 0.91, 0.96, 0.97])
    cf_acc = np.array([0.60, 0.50, 0.40, 0.30])
    s = frontier_summary(biases, id_acc, cf_acc, [0.90, 0.95, 0.99])
    assert s["at_zero"] == {"id_accuracy": 0.96, "cf_accuracy": 0.40}
    assert s["best_cf_at_id"]["0.90"] == {"cf_accuracy": 0.50, "id_accuracy": 0.91, "bias": -1.0}
    assert s["best_cf_at_id"]["0.95"] == {"cf_accuracy": 0.40, "id_accuracy": 0.96, "bias": 0.0}
    assert s["best_cf_at_id"]["0.99"] is None  # ID never gets there
    assert s["max_id_accuracy"] == 0.97 and s["max_cf_accuracy"] == 0.60


def test_frontier_summary_prefers_the_smallest_bias_among_ties():
    s = frontier_summary(np.array([-3.0, -1.0, 0.0]), np.array([0.95, 0.95, 0.95]), np.array([0.2, 0.2, 0.2]), [0.9])
    assert s["best_cf_at_id"]["0.90"]["bias"] == 0.0


class SplittingTokenizer:
    """One token per space-separated word, except orange/yellow/green/purple, which split in two."""

    def __call__(self, text, add_special_tokens=False):
        ids = []
        for w in text.split(" "):
            ids += [len(w), 0] if w in ("orange", "yellow", "green", "purple") else [len(w)]
        return {"input_ids": ids}


def test_colour_token_ids_handle_multi_token_words():
    ids = colour_token_ids(SplittingTokenizer(), "<|assistant|> The apple is")
    assert [len(t) for t in ids] == [1, 2, 2, 2, 1, 1, 2, 1]  # red orange yellow green cyan blue purple pink


def test_merging_tokenizer_is_refused():
    class Merging:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [len(text)]}  # one token for everything: no clean slot

    with pytest.raises(ValueError, match="no clean colour slot"):
        colour_token_ids(Merging(), "The apple is")


def test_answer_prefix_is_the_world_template():
    assert answer_prefix("apple") == "The apple is"
