"""POPE: the official parser on tricky strings, metrics by hand, loading errors, an end-to-end run."""

from __future__ import annotations

import pytest

from unprior.answers import parse_pope, parse_pope_exact
from unprior.config import ConfigError, from_dict
from unprior.eval.benchmarks.pope import pope_metrics
from unprior.eval.common import check_images
from unprior.eval.config import EvalConfig
from unprior.eval.registry import DataError, make_benchmark
from unprior.eval.runner import run_eval

from .helpers import ScriptedGenerator, touch_images, write_jsonl


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("No, there is not.", "no"),
        ("Yes.", "yes"),
        ("There is a dog.", "yes"),
        ("", "yes"),  # empty answers count as "yes" in the official parser
        ("no", "no"),
        ("No", "no"),
        ("NO", "yes"),  # only "No", "no", "not" are negative tokens
        ("There is not a dog in the image.", "no"),
        ("Yes, there is a dog. No other animals are visible.", "yes"),  # only the first sentence counts
        ("I don't know", "yes"),  # "don't" is not "not"
        ("No\nThere is none", "yes"),  # split on single spaces: "No\nThere" is one token
        ("Nope.", "yes"),
        ("no.", "no"),
    ],
)
def test_parse_pope_official(answer, expected):
    assert parse_pope(answer) == expected


def test_parse_pope_exact_is_lmms_eval_rule():
    assert parse_pope_exact(" Yes ") == "yes"
    assert parse_pope_exact("No") == "no"
    assert parse_pope_exact("Yes.") is None
    assert parse_pope_exact("No, there is not.") is None


def test_pope_metrics_by_hand():
    """preds/labels: TP=2 (y,y), FP=1 (y,n), TN=2 (n,n), FN=1 (n,y); N=6.

    accuracy = 4/6 = 66.667; precision = 2/3; recall = 2/3; F1 = 2/3; yes-ratio = 3/6 = 50.
    """
    preds = ["yes", "yes", "yes", "no", "no", "no"]
    labels = ["yes", "yes", "no", "no", "no", "yes"]
    m = pope_metrics(preds, labels)
    assert m["accuracy"] == pytest.approx(400 / 6)
    assert m["precision"] == pytest.approx(200 / 3)
    assert m["recall"] == pytest.approx(200 / 3)
    assert m["f1"] == pytest.approx(200 / 3)
    assert m["yes_ratio"] == pytest.approx(50.0)


def test_pope_metrics_yes_ratio_from_predictions_and_zero_division():
    """All "no" predictions: no positives predicted, so precision and F1 are 0 (not an error); yes-ratio 0."""
    m = pope_metrics(["no", "no"], ["yes", "no"])
    assert m == {"accuracy": 50.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0}
    # an unparsable answer (exact parser) is wrong and is neither positive nor negative
    m = pope_metrics([None, "yes"], ["yes", "yes"])
    assert m["accuracy"] == 50.0 and m["recall"] == 100.0 and m["yes_ratio"] == 50.0


def _pope_data(tmp_path, rows=None):
    images = touch_images(tmp_path / "val2014", ["COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg"])
    rows = rows or [
        {"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog in the image?",
         "label": "yes"},
        {"question_id": 2, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a cat in the image?",
         "label": "no"},
        {"question_id": 3, "image": "COCO_val2014_000000000002.jpg", "text": "Is there a car in the image?",
         "label": "yes"},
        {"question_id": 4, "image": "COCO_val2014_000000000002.jpg", "text": "Is there a bus in the image?",
         "label": "no"},
    ]
    return write_jsonl(tmp_path / "coco_pope_random.json", rows), images


def test_pope_end_to_end(tmp_path, quiet_console):
    questions, images = _pope_data(tmp_path)
    cfg = from_dict(EvalConfig, {"benchmark": "pope", "out": str(tmp_path / "run"),
                                 "options": {"questions": {"random": str(questions)}, "image_root": str(images)}})
    gen = ScriptedGenerator({"dog": "Yes, there is.", "cat": "Yes.", "car": "No, there is not.", "bus": "No."})
    res = run_eval(cfg, gen, console=quiet_console)
    # TP=1 (dog), FP=1 (cat), FN=1 (car), TN=1 (bus)
    assert res["metrics"]["random/accuracy"] == 50.0
    assert res["metrics"]["random/f1"] == 50.0
    assert res["metrics"]["mean_f1"] == 50.0
    assert res["parser_version"] == "pope-original-v1"
    assert res["provenance"]["yes_ratio_from"] == "predictions"
    assert res["metric_info"]["random/yes_ratio"]["higher_is_better"] is None
    assert gen.seen == ["random/1", "random/2", "random/3", "random/4"]


def test_pope_prompt_suffix(tmp_path):
    questions, images = _pope_data(tmp_path)
    bench = make_benchmark("pope", {"questions": {"random": str(questions)}, "image_root": str(images)})
    item = bench.load()[0]
    assert item.prompt == "Is there a dog in the image?\nAnswer the question using a single word or phrase."
    assert item.image.is_absolute() and item.target == {"split": "random", "label": "yes"}


def test_pope_bad_rows_name_file_and_line(tmp_path):
    q, images = _pope_data(tmp_path, [{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "x",
                                       "label": "yes"},
                                      {"question_id": 2, "image": "COCO_val2014_000000000001.jpg", "text": "y",
                                       "label": "maybe"}])
    bench = make_benchmark("pope", {"questions": {"random": str(q)}, "image_root": str(images)})
    with pytest.raises(DataError, match=r"coco_pope_random.json:2: field 'label' should be 'yes' or 'no'"):
        bench.load()

    q.write_text('{"question_id": 1, "image": "missing.jpg", "text": "x", "label": "yes"}\n')
    with pytest.raises(DataError, match=r"coco_pope_random.json:1: image not found: .*missing.jpg"):
        check_images(bench.load())  # the runner checks the images of the items a run uses

    q.write_text('{"question_id": 1, "image": "../../etc/passwd", "text": "x", "label": "yes"}\n')
    with pytest.raises(DataError, match="escapes the dataset root"):
        bench.load()

    q.write_text('{"question_id": 1, "text": "x", "label": "yes"}\n{"broken\n')
    with pytest.raises(DataError, match=r"coco_pope_random.json:1: missing field 'image'"):
        bench.load()

    q.write_text('{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "x", "label": "yes"}\n{"br\n')
    with pytest.raises(DataError, match=r"coco_pope_random.json:2: not valid JSON"):
        bench.load()

    bench = make_benchmark("pope", {"questions": {"random": str(tmp_path / "nope.json")}, "image_root": str(images)})
    with pytest.raises(DataError, match=r"options.questions.random: file not found: .*nope.json"):
        bench.load()


def test_pope_options_validation():
    with pytest.raises(ConfigError, match=r"options\.questions"):
        make_benchmark("pope", {"image_root": "x"})
    with pytest.raises(ConfigError, match=r"options\.parser"):
        make_benchmark("pope", {"questions": {"random": "q"}, "image_root": "x", "parser": "fuzzy"})
    with pytest.raises(ConfigError, match=r"options\.colour"):
        make_benchmark("pope", {"questions": {"random": "q"}, "image_root": "x", "colour": 1})


def test_pope_limit_is_per_split_and_checks_only_used_images(tmp_path, quiet_console):
    """Issue 21 item 3: ``limit`` takes the first N questions of every split, ``mean_f1`` is over the splits that
    ran (named in provenance), and an image that only a question past the limit uses is never looked for."""
    images = touch_images(tmp_path / "val2014", ["a.jpg"])
    files = {}
    for split in ("random", "popular", "adversarial"):
        rows = [{"question_id": i, "image": "a.jpg" if i < 2 else "gone.jpg", "text": f"Is there a {split}{i}?",
                 "label": "yes" if i % 2 else "no"} for i in range(5)]
        files[split] = str(write_jsonl(tmp_path / f"coco_pope_{split}.json", rows))
    options = {"questions": files, "image_root": str(images)}
    cfg = from_dict(EvalConfig, {"benchmark": "pope", "out": str(tmp_path / "run"), "limit": 2,
                                 "options": options})
    gen = ScriptedGenerator(default="Yes")
    res = run_eval(cfg, gen, console=quiet_console)
    assert gen.seen == [f"{s}/{i}" for s in files for i in range(2)]
    assert res["n_items"] == 6
    assert res["provenance"]["items_per_split"] == {"random": 2, "popular": 2, "adversarial": 2}
    assert res["provenance"]["mean_f1_splits"] == ["random", "popular", "adversarial"]
    assert {f"{s}/f1" for s in files} <= set(res["metrics"])
    assert res["metrics"]["mean_f1"] == pytest.approx(res["metrics"]["random/f1"])
    # one split only: the mean is that split's, and provenance says so
    one = from_dict(EvalConfig, {"benchmark": "pope", "out": str(tmp_path / "one"), "limit": 2,
                                 "options": {**options, "questions": {"popular": files["popular"]}}})
    assert run_eval(one, ScriptedGenerator(), console=quiet_console)["provenance"]["mean_f1_splits"] == ["popular"]
    # a used question's missing image fails before generation, naming the file and line
    bad = from_dict(EvalConfig, {"benchmark": "pope", "out": str(tmp_path / "bad"), "limit": 3,
                                 "options": options})
    gen = ScriptedGenerator()
    with pytest.raises(DataError, match=r"coco_pope_random.json:3: image not found: .*gone.jpg"):
        run_eval(bad, gen, console=quiet_console)
    assert gen.seen == []
