"""CHAIR and Object HalBench: hand-checked captions (synonyms, plurals, special rules), metrics, ground truth."""

from __future__ import annotations

import base64
import json

import pytest

from unprior.answers import vocabulary
from unprior.config import ConfigError, from_dict
from unprior.eval.benchmarks.chair import (
    build_ground_truth_file,
    caption_mentions,
    chair_metrics,
    ground_truth_from_coco,
    load_ground_truth,
    score_caption,
)
from unprior.eval.common import check_images
from unprior.eval.config import EvalConfig
from unprior.eval.registry import DataError, make_benchmark
from unprior.eval.runner import run_eval

from .helpers import ScriptedGenerator, touch_images, write_json, write_jsonl

LISA = vocabulary("lisaanne")
REFINE = vocabulary("refine")


def test_word_lists():
    assert len(LISA.classes) == 80 and LISA.classes == REFINE.classes
    assert len(LISA.synonym_to_class) == 403  # distinct entries of the original list
    # the original's quirks: entries after a double space keep a leading space and never match
    assert " motor bike" in LISA.synonym_to_class and "motor bike" not in LISA.synonym_to_class
    assert REFINE.synonym_to_class["motor bike"] == "motorcycle"
    assert REFINE.synonym_to_class["pedestrian"] == "person"
    assert REFINE.synonym_to_class["coffee table"] == "dining table"
    assert REFINE.synonym_to_class["remote control"] == "remote"
    assert "brother" not in LISA.synonym_to_class


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        # plurals through the WordNet lemma table; "women" -> woman -> person
        ("A man and two women are sitting on a couch with their dogs.",
         [("man", "person"), ("woman", "person"), ("couch", "couch"), ("dog", "dog")]),
        # baby/adult animals and passenger vehicles do not fire "person"
        ("A baby elephant stands next to an adult giraffe near a passenger train.",
         [("elephant", "elephant"), ("giraffe", "giraffe"), ("train", "train")]),
        # "toilet seat" is a toilet, and with "toilet" present every "seat" is dropped (else: chair)
        ("The toilet seat is up and a seat is next to the sink.", [("toilet", "toilet"), ("sink", "sink")]),
        ("A seat next to the sink.", [("seat", "chair"), ("sink", "sink")]),
        # bigrams after lemmatizing ("glasses" -> glass), and a synonym of a two-word class
        ("Two wine glasses and hot dogs on the dining table.",
         [("wine glass", "wine glass"), ("hot dog", "hot dog"), ("table", "dining table")]),
        # "bow tie" is a tie; "home plate" consumes "plate"; sports equipment bigram
        ("A man in a bow tie at home plate holds a baseball bat.",
         [("man", "person"), ("tie", "tie"), ("baseball bat", "baseball bat")]),
        # WordNet keeps "men" (a noun of its own), so it is not "person"; " motor bike" never matches
        ("Men ride motor bikes.", []),
        # capitalisation does not matter (captions are lowercased first); clitics split off
        ("The Dog's bowl.", [("dog", "dog"), ("bowl", "bowl")]),
        ("", []),
    ],
)
def test_caption_mentions_lisaanne_wordnet(caption, expected):
    """``lemmatizer="wordnet"`` is the scorer before chair-v2, unchanged (the RLHF-V lemmatizer)."""
    assert caption_mentions(caption, LISA, "wordnet") == expected


def test_caption_mentions_refine_differences():
    assert caption_mentions("Men ride motor bikes.", REFINE, "wordnet") == [("motor bike", "motorcycle")]
    assert caption_mentions("Men ride motor bikes.", REFINE) == [("man", "person"), ("motor bike", "motorcycle")]
    assert caption_mentions("A pedestrian near a coffee table.", REFINE) == [("pedestrian", "person"),
                                                                           ("coffee table", "dining table")]
    assert caption_mentions("A pedestrian near a coffee table.", LISA) == [("table", "dining table")]


def test_chair_metrics_by_hand():
    """Four captions (ground truth in brackets).

    A [person, couch]: man, woman, couch, dog -> 1 hallucinated (dog)
    B [elephant, giraffe]: elephant, giraffe, train -> 1 hallucinated (train)
    C [toilet, sink]: toilet, sink -> 0
    D [cat]: no object mentioned

    CHAIRi = 2/9; CHAIRs = 2/4; CHAIRs over captions with mentions = 2/3;
    recall = (2 + 2 + 2 + 0) / (2 + 2 + 2 + 1) = 6/7.
    """
    caps = [("A man and two women are sitting on a couch with their dogs.", ["person", "couch"]),
            ("A baby elephant stands next to an adult giraffe near a passenger train.", ["elephant", "giraffe"]),
            ("The toilet seat is up and a seat is next to the sink.", ["toilet", "sink"]),
            ("A sunny day.", ["cat"])]
    scores = [score_caption(c, gt, LISA) for c, gt in caps]
    assert scores[0]["hallucinated"] == [["dog", "dog"]]
    assert scores[1]["hallucinated"] == [["train", "train"]]
    m = chair_metrics(scores)
    assert m["chair_i"] == pytest.approx(200 / 9)
    assert m["chair_s"] == pytest.approx(50.0)
    assert m["chair_s_refine"] == pytest.approx(200 / 3)
    assert m["recall"] == pytest.approx(600 / 7)
    assert m["avg_len"] == pytest.approx((13 + 13 + 13 + 3) / 4)  # words split on spaces


def _coco(tmp_path):
    ann = tmp_path / "annotations"
    write_json(ann / "instances_val2014.json", {
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}],
        "annotations": [{"image_id": 1, "category_id": 1}, {"image_id": 2, "category_id": 18},
                        {"image_id": 3, "category_id": 62}]})
    write_json(ann / "captions_val2014.json", {"annotations": [
        {"image_id": 1, "caption": "A woman sits on a chair."}, {"image_id": 2, "caption": "A puppy on a sofa."},
        {"image_id": 3, "caption": "A chair."}]})
    return ann


def test_ground_truth_from_coco_instances_and_captions(tmp_path):
    gt = ground_truth_from_coco(_coco(tmp_path), [1, 2], LISA)
    assert gt == {1: ["chair", "person"], 2: ["couch", "dog"]}


def test_ground_truth_file_round_trip_and_checks(tmp_path):
    path = build_ground_truth_file(_coco(tmp_path), [1, 2], tmp_path / "gt.json", synonyms="lisaanne",
                                   lemmatizer="singularize")
    assert load_ground_truth(path, LISA) == {1: ["chair", "person"], 2: ["couch", "dog"]}
    with pytest.raises(DataError, match="built with synonyms='lisaanne', this run needs 'refine'"):
        load_ground_truth(path, REFINE)
    with pytest.raises(DataError, match=r"built with tokenizer='nltk3\.10\.4-punkt_tab-english-v1\+nltk3\.10\.4-"
                                        r"treebank-v1', this run needs 'treebank-approx-v1'"):
        load_ground_truth(path, LISA, "wordnet")
    data = json.loads(path.read_text())
    data["images"]["1"] = ["unicorn"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"gt.json: images\['1'\]"):
        load_ground_truth(path, LISA)
    with pytest.raises(DataError, match="need COCO 2014 annotations"):
        ground_truth_from_coco(tmp_path, [1], LISA)


def test_chair_run_from_coco_annotations_writes_reusable_ground_truth(tmp_path, quiet_console):
    images = touch_images(tmp_path / "val2014", ["COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg"])
    questions = write_jsonl(tmp_path / "chair.jsonl", [{"image_id": 1}, {"image_id": 2}])
    opts = {"questions": str(questions), "image_root": str(images), "coco_annotations": str(_coco(tmp_path))}
    cfg = from_dict(EvalConfig, {"benchmark": "chair", "out": str(tmp_path / "run"), "options": opts})
    gen = ScriptedGenerator(default="A woman sits on a chair next to a dog.")
    res = run_eval(cfg, gen, console=quiet_console)
    # image 1 [chair, person]: woman, chair ok, dog hallucinated; image 2 [couch, dog]: woman, chair hallucinated
    assert res["metrics"]["chair_i"] == pytest.approx(100 * 3 / 6)
    assert res["metrics"]["chair_s"] == 100.0
    assert res["provenance"]["ground_truth"] == "coco_annotations"
    assert gen.seen == ["0", "1"] and "Please describe this image in detail." in json.loads(
        (tmp_path / "run" / "samples.jsonl").read_text().splitlines()[0])["prompt"]
    # the written ground truth replaces the COCO files on a re-score
    opts2 = {**opts, "coco_annotations": "", "ground_truth": str(tmp_path / "run" / "chair_ground_truth.json")}
    cfg2 = from_dict(EvalConfig, {"benchmark": "chair", "out": str(tmp_path / "run"), "options": opts2})
    assert run_eval(cfg2, None, console=quiet_console)["metrics"] == res["metrics"]


def test_object_halbench_embedded_images_and_metrics(tmp_path, quiet_console):
    gt = tmp_path / "gt.json"
    build_ground_truth_file(_coco(tmp_path), [1, 2, 3], gt, synonyms="refine")
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
    rows = [{"org_idx": 10, "image_id": 1, "question": "Provide a thorough description of the given image.",
             "image": png},
            {"org_idx": 11, "image_id": 2, "question": "Describe the image in detail.", "image": png},
            {"org_idx": 12, "image_id": 3, "question": "What is this?", "image": png}]
    questions = write_jsonl(tmp_path / "objhal.jsonl", rows)
    opts = {"questions": str(questions), "embedded_images": True, "ground_truth": str(gt)}
    cfg = from_dict(EvalConfig, {"benchmark": "object_halbench", "out": str(tmp_path / "run"), "options": opts})
    bench = make_benchmark("object_halbench", opts)
    items = bench.load()
    assert [it.id for it in items] == ["10", "11", "12"] and items[0].image.read_bytes().startswith(b"\x89PNG")
    gen = ScriptedGenerator({"thorough": "A pedestrian and a dog.", "Describe": "A puppy on a couch.",
                             "What": "Nothing to see."})
    res = run_eval(cfg, gen, console=quiet_console)
    # 1 [chair, person]: pedestrian ok, dog hallucinated; 2 [couch, dog]: ok; 3: no mention
    assert res["metrics"]["response_hall"] == pytest.approx(50.0)  # 1 of the 2 responses with mentions
    assert res["metrics"]["chair_s_all"] == pytest.approx(100 / 3)
    assert res["metrics"]["mention_hall"] == pytest.approx(25.0)
    assert res["headline"] == ["response_hall", "mention_hall"]
    assert res["provenance"]["synonyms"] == "refine"


def test_chair_data_errors(tmp_path):
    gt = build_ground_truth_file(_coco(tmp_path), [1], tmp_path / "gt.json", synonyms="lisaanne",
                                 lemmatizer="singularize")
    images = touch_images(tmp_path / "val2014", ["COCO_val2014_000000000002.jpg"])
    questions = write_jsonl(tmp_path / "q.jsonl", [{"image_id": 2}])
    bench = make_benchmark("chair", {"questions": str(questions), "image_root": str(images), "ground_truth": str(gt)})
    with pytest.raises(DataError, match=r"q.jsonl:1: image_id 2 has no ground truth"):
        bench.load()
    write_jsonl(questions, [{"image_id": 1}])
    with pytest.raises(DataError, match=r"q.jsonl:1: image not found: .*COCO_val2014_000000000001.jpg"):
        check_images(bench.load())  # existence is checked on the items a run uses (tests/eval/test_limit_images.py)
    with pytest.raises(ConfigError, match="exactly one of ground_truth"):
        make_benchmark("chair", {"questions": "q", "image_root": "i"})
    write_jsonl(questions, [{"image_id": 1, "image": "not base64!"}])
    bench = make_benchmark("object_halbench", {"questions": str(questions), "embedded_images": True,
                                               "ground_truth": str(gt)})
    with pytest.raises(DataError, match=r"q.jsonl:1: field 'image' is neither a relative path nor valid base64"):
        bench.load()


def test_simple_ground_truth_for_your_own_images(tmp_path, quiet_console):
    """Issue 21 item 12: a plain {image: [objects]} file (objects: COCO classes or synonyms) scores non-COCO images;
    the question rows name the image and need no COCO image_id."""
    images = touch_images(tmp_path / "photos", ["kitchen.jpg", "park/dog.jpg"])
    gt = write_json(tmp_path / "gt.json", {"kitchen.jpg": ["woman", "stove", "cup"], "park/dog.jpg": ["puppies"]})
    questions = write_jsonl(tmp_path / "q.jsonl", [{"image": "kitchen.jpg"}, {"image": "park/dog.jpg"}])
    cfg = from_dict(EvalConfig, {"benchmark": "chair", "out": str(tmp_path / "run"),
                                 "options": {"questions": str(questions), "image_root": str(images),
                                             "ground_truth": str(gt)}})
    gen = ScriptedGenerator(default="A woman with a cup next to an oven and a cat.")
    res = run_eval(cfg, gen, console=quiet_console)
    scores = [json.loads(line) for line in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
    assert scores[0]["gt"] == ["cup", "oven", "person"] and scores[1]["gt"] == ["dog"]
    assert res["metrics"]["chair_s"] == 100.0  # the cat in both, and for the park photo everything
    bad = write_json(tmp_path / "bad.json", {"kitchen.jpg": ["spaceship"]})
    with pytest.raises(DataError, match=r"'spaceship' is not a COCO object word of the lisaanne list"):
        make_benchmark("chair", {"questions": str(questions), "image_root": str(images),
                                 "ground_truth": str(bad)}).load()
