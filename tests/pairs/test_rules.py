"""Rule-based error injection: dataset statistics and single, partly-right edits."""

from __future__ import annotations

from unprior.formats.pairs import Sample
from unprior.numerics import stable_seed
from unprior.pairs.rules import dataset_stats, find_mentions, rule_negatives
from unprior.world.phrasings import MAX_PHRASINGS, attribute_text, exists_text


def _objs(*objs: tuple[str, str]) -> dict:
    return {"objects": [{"category": c, "colour": k} for c, k in objs]}


WORLD = [
    Sample("d1", "img1", "Describe the image.", "A red apple and a yellow banana.",
           meta=_objs(("apple", "red"), ("banana", "yellow"))),
    Sample("d2", "img2", "Describe the image.", "A green apple.", meta=_objs(("apple", "green"))),
    Sample("d3", "img3", "Describe the image.", "A red apple, a yellow banana and a green frog.",
           meta=_objs(("apple", "red"), ("banana", "yellow"), ("frog", "green"))),
    Sample("a2", "img2", "What color is the apple?", "The apple is green.", meta=_objs(("apple", "green"))),
    Sample("e2", "img2", "Is there a banana in the image?", "No, there is no banana.", meta=_objs(("apple", "green"))),
    Sample("e1", "img1", "Is there an apple in the image?", "Yes, there is an apple.",
           meta=_objs(("apple", "red"), ("banana", "yellow"))),
]  # fmt: skip


def _one(sample: Sample, edit: str, stats=None):
    stats = stats or dataset_stats(WORLD)
    (out,) = rule_negatives(sample, stats, [edit], 1, seed=0)
    return out


def test_stats_count_per_image_from_ground_truth() -> None:
    stats = dataset_stats(WORLD)
    assert stats.source == "meta.objects"
    assert stats.images == 3  # rows sharing an image count once
    assert stats.object_freq == {"apple": 3, "banana": 2, "frog": 1}
    assert stats.cooc["apple"]["banana"] == 2 and stats.cooc["banana"]["frog"] == 1
    assert stats.colours["apple"] == {"red": 2, "green": 1}


def test_insert_object_adds_the_most_cooccurring_absent_object() -> None:
    edit = _one(WORLD[1], "insert_object")  # a green apple alone: banana co-occurs with apple most
    assert edit.text == "A green apple and a yellow banana."
    assert edit.detail == {"object": "banana", "colour": "yellow", "cooccurrence": 2}
    edit = _one(WORLD[0], "insert_object")  # apple + banana present: frog co-occurs with both
    assert edit.text == "A red apple, a yellow banana and a green frog."


def test_swap_attribute_uses_the_objects_most_common_other_colour() -> None:
    edit = _one(WORLD[3], "swap_attribute")
    assert edit.text == "The apple is red."  # the language prior: apples are mostly red
    assert edit.detail == {"object": "apple", "from": "green", "to": "red"}


def test_flip_existence_both_ways() -> None:
    assert _one(WORLD[4], "flip_existence").text == "Yes, there is a banana."
    assert _one(WORLD[5], "flip_existence").text == "No, there is no apple."


def test_edits_read_every_world_phrasing() -> None:
    """swap_attribute finds the object's colour in every attribute phrasing; flip_existence maps each yes phrasing
    to the same phrasing's no and back (unprior.world.phrasings)."""
    for k in range(MAX_PHRASINGS):
        sample = Sample("a", "img2", "What color is the apple?", attribute_text("apple", "green", k),
                        meta=_objs(("apple", "green")))
        edit = _one(sample, "swap_attribute")
        assert edit.text == attribute_text("apple", "red", k) and edit.detail["object"] == "apple"
        for category, present in (("apple", True), ("banana", False)):
            answer = exists_text(category, present, k)
            sample = Sample("e", "img2", "Is there ...?", answer, meta=_objs(("apple", "green")))
            assert _one(sample, "flip_existence").text == exists_text(category, not present, k)


def test_every_edit_is_single_and_keeps_the_rest() -> None:
    stats = dataset_stats(WORLD)
    for s in WORLD:
        for edit in rule_negatives(s, stats, ["insert_object", "swap_attribute", "flip_existence"], 3, seed=1):
            before, after = s.answer.split(), edit.text.split()
            assert edit.text != s.answer
            if edit.name == "swap_attribute":  # exactly one word replaced
                assert len(before) == len(after) and sum(a != b for a, b in zip(before, after, strict=True)) == 1
            elif edit.name == "insert_object":  # the original objects are all still there, plus one phrase
                assert len(after) - len(before) in (3, 4) and edit.detail["object"] in edit.text
            else:  # yes <-> no and the determiner
                assert before[0] != after[0] and before[-1] == after[-1]


def test_inapplicable_edits_give_nothing() -> None:
    stats = dataset_stats(WORLD)
    assert rule_negatives(WORLD[3], stats, ["flip_existence"], 1, seed=0) == []
    assert rule_negatives(WORLD[4], stats, ["insert_object"], 1, seed=0) == []  # negated mention only


def test_edit_order_is_seeded_per_sample() -> None:
    stats = dataset_stats(WORLD)
    edits = ["insert_object", "swap_attribute"]
    first = [rule_negatives(s, stats, edits, 1, seed=3) for s in WORLD]
    assert first == [rule_negatives(s, stats, edits, 1, seed=3) for s in WORLD]
    names = {rule_negatives(WORLD[0], stats, edits, 1, seed=k)[0].name for k in range(12)}
    assert names == set(edits)
    assert stable_seed("a", 1) == stable_seed("a", 1) != stable_seed("a", 2)


def test_answer_scan_fallback_without_ground_truth() -> None:
    samples = [
        Sample("x", "i1", "Describe the image.", "A man rides a red bus past a stop sign. The dog is brown."),
        Sample("y", "i2", "Describe the image.", "Two dogs and a white cat sit on a couch. There is no car."),
    ]
    stats = dataset_stats(samples)
    assert stats.source == "answer_scan"
    assert "car" not in stats.object_freq  # negated mention
    assert stats.colours["bus"] == {"red": 1} and stats.colours["dog"] == {"brown": 1}
    assert [m.obj for m in find_mentions(samples[0].answer, stats)] == ["person", "bus", "stop sign", "dog"]
    edit = rule_negatives(samples[0], stats, ["swap_attribute"], 1, seed=0)[0]
    assert edit.text.count("red") + edit.text.count("brown") + edit.text.count("white") == 2
    edit = rule_negatives(samples[1], stats, ["insert_object"], 1, seed=0)[0]
    assert edit.detail["object"] in {"person", "bus", "stop sign"}


COCO_STYLE = [  # real-style COCO captions (the kind of reference answers a LLaVA-format dataset holds)
    "A woman in a black dress holding an umbrella.",
    "She wears glasses, a black tie and a white shirt.",
    "A man riding a wave on top of a surfboard.",
    "Two dogs playing with a frisbee in the grass.",
    "A kitchen with a stove, a sink and a refrigerator.",
    "There is a cat sitting on a laptop.",
    "A group of people standing around a table with a pizza.",
    "A little girl eating a donut at a table",
    "Two men in suits and ties standing next to a car.",
    "A red fire hydrant on the side of a street.",
    "A bowl of broccoli and a cup of coffee.",
    "A red bus and a white car.",
]


def test_rules_know_chairs_synonyms_and_edit_coco_captions_grammatically() -> None:
    """Issue 21 item 10: the answer scan uses CHAIR's synonym table ("woman", "men", "people" are a person, "stove"
    an oven), so a caption about a woman never gets "a person" inserted; an object is inserted into a sentence only
    when the sentence just lists objects, else as a sentence of its own (never "a black tie and a person.")."""
    samples = [Sample(str(i), f"im{i}", "Describe the image.", c) for i, c in enumerate(COCO_STYLE)]
    stats = dataset_stats(samples)
    assert [m.obj for m in find_mentions(COCO_STYLE[0], stats)] == ["person", "umbrella"]
    assert [m.obj for m in find_mentions(COCO_STYLE[8], stats)] == ["person", "tie", "car"]
    assert [m.obj for m in find_mentions(COCO_STYLE[4], stats)] == ["oven", "sink", "refrigerator"]
    assert stats.object_freq["person"] == 5 and "woman" not in stats.object_freq  # woman, man, people, girl, men
    inserted = {s.answer: rule_negatives(s, stats, ["insert_object"], 1, seed=0) for s in samples}
    for caption, edits in inserted.items():
        assert len(edits) == 1, caption
        edit = edits[0]
        obj = edit.detail["object"]
        if caption in (COCO_STYLE[0], COCO_STYLE[1], COCO_STYLE[2], COCO_STYLE[6], COCO_STYLE[7], COCO_STYLE[8]):
            assert obj != "person", caption  # a woman, she, a man, people, a girl, men: a person is present
        words = " ".join(w for w in (edit.detail["colour"], obj) if w)
        phrase = f"{'an' if words[0] in 'aeiou' else 'a'} {words}"
        if caption == "A red bus and a white car.":  # a bare list is extended
            assert edit.text == f"A red bus, a white car and {phrase}."
        else:  # anything else gets a sentence of its own, the caption itself untouched
            assert edit.text == caption.rstrip(".") + f". There is also {phrase}.", caption
    assert inserted[COCO_STYLE[1]][0].text != "She wears glasses, a black tie and a person."
