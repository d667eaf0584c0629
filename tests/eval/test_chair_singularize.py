"""CHAIR as the original code computes it (``lemmatizer="singularize"``, the default) and as the WordNet variant does.

Each row is a caption built to exercise one rule of ``nltk.word_tokenize`` + ``pattern.en.singularize`` + the CHAIR
bigram and toilet-seat rules, with its image's ground-truth classes. The expected mentions and hallucinated words
were derived by hand from those rules (unprior/eval/treebank.py, unprior/eval/singularize.py); ``wordnet`` is None
where the WordNet variant finds the same mentions, else its mentions, derived by hand from WordNet's lemmas and the
approximate tokenizer of unprior/eval/text.py. docs/eval.md lists the rows that differ and why.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from unprior.answers import vocabulary
from unprior.config import from_dict
from unprior.eval.benchmarks.chair import (
    caption_mentions,
    chair_metrics,
    ground_truth_from_coco,
    score_caption,
)
from unprior.eval.config import EvalConfig
from unprior.eval.runner import run_eval

from .helpers import ScriptedGenerator, touch_images, write_json, write_jsonl

LISA = vocabulary("lisaanne")

P, D = "person", "dog"


class Row(NamedTuple):
    caption: str
    gt: list[str]
    mentions: list[tuple[str, str]]
    """With ``singularize``: (word, class) in order."""
    hallucinated: list[str]
    """With ``singularize``: the words of the mentions whose class is not in ``gt``."""
    wordnet: list[tuple[str, str]] | None = None
    """With ``wordnet``, where it differs."""


ROWS = {
    # plurals and "women" -> "woman" work in both variants
    1: Row("A man and two women are sitting on a couch with their dogs.", [P, "couch"],
           [("man", P), ("woman", P), ("couch", "couch"), ("dog", D)], ["dog"]),
    # "men" -> "man" is a person for singularize; WordNet keeps "men", which is no synonym
    2: Row("Two men ride horses.", ["horse"], [("man", P), ("horse", "horse")], ["man"], [("horse", "horse")]),
    # "bus" -> "bu" and "minibus" -> "minibu" never match; "buses" -> "bus" does
    3: Row("A red bus drives past two buses and a minibus.", ["car"], [("bus", "bus")], ["bus"],
           [("bus", "bus"), ("bus", "bus"), ("minibus", "bus")]),
    # "ties" -> "ty" never matches; "bow tie" is a tie in both
    4: Row("A rack of ties and a man in a bow tie.", [P], [("man", P), ("tie", "tie")], ["tie"],
           [("tie", "tie"), ("man", P), ("tie", "tie")]),
    # "bow ties" -> "bow ty": no bigram, but "bow" is itself a synonym of tie
    5: Row("Two men in bow ties.", [P, "tie"], [("man", P), ("bow", "tie")], [], [("tie", "tie")]),
    # "doggies" and "collies" stay plural (listed -ie nouns); WordNet gives "doggy" and "collie"
    6: Row("Two doggies and three collies play with a puppy.", [D], [("puppy", D)], [],
           [("doggy", D), ("collie", D), ("puppy", D)]),
    # a curly apostrophe splits "dog’s" into "dog", "’", "s"; the approximate tokenizer keeps "dog’s" whole
    7: Row("The dog’s bowl is next to the cat’s bed.", [D, "bowl", "bed"],
           [("dog", D), ("bowl", "bowl"), ("cat", "cat"), ("bed", "bed")], ["cat"],
           [("bowl", "bowl"), ("bed", "bed")]),
    # a straight apostrophe: "'s" splits in both
    8: Row("The dog's bowl is next to the cat's bed.", [D, "bowl", "bed"],
           [("dog", D), ("bowl", "bowl"), ("cat", "cat"), ("bed", "bed")], ["cat"]),
    # em dashes split (nltk 3.10); the approximate tokenizer keeps "cat—and"
    9: Row("A cat—and a dog—sit on a bench.", ["cat", D], [("cat", "cat"), ("dog", D), ("bench", "bench")], ["bench"],
           [("bench", "bench")]),
    # curly double quotes split
    10: Row("“A dog” and “a frisbee” are on the grass.", [D], [("dog", D), ("frisbee", "frisbee")], ["frisbee"], []),
    # "&" splits anywhere
    11: Row("Cats&dogs on a sofa.", ["cat", D, "couch"], [("cat", "cat"), ("dog", D), ("sofa", "couch")], [],
            [("sofa", "couch")]),
    # "st." is a Punkt abbreviation (no sentence break, the token keeps its period); the singular bus is lost
    12: Row("A bus on Main St. near a car and a truck.", ["bus", "car"], [("car", "car"), ("truck", "truck")],
            ["truck"], [("bus", "bus"), ("car", "car"), ("truck", "truck")]),
    # "e.g." is not an abbreviation: Punkt breaks after it
    13: Row("Animals, e.g. cats and dogs.", ["cat"], [("cat", "cat"), ("dog", D)], ["dog"]),
    # numbered items: "1." and "2." before a lowercase word do not break; "toilet seat" is a toilet
    14: Row("1. A dog 2. a cat on a toilet seat", [D, "toilet"], [("dog", D), ("cat", "cat"), ("toilet", "toilet")],
            ["cat"]),
    # "people" -> "person" (WordNet keeps "people", also a synonym); "children" -> "child" in both
    15: Row("The people are waiting for the children.", [P], [("person", P), ("child", P)], [],
            [("people", P), ("child", P)]),
    # "tennis" -> "tenni" breaks the "tennis racket" bigram (the bare "racket" still matches); "sports" -> "sport"
    16: Row("A tennis player holds a tennis racket and a sports ball.", [P, "tennis racket"],
            [("player", P), ("racket", "tennis racket"), ("ball", "sports ball")], ["ball"],
            [("player", P), ("tennis racket", "tennis racket"), ("ball", "sports ball")]),
    # "glasses" -> "glass" gives "wine glass"; "glass" -> "glas" gives "wine glas", mapped back to wine glass
    17: Row("Two wine glasses and a wine glass.", ["wine glass"], [("wine glass", "wine glass")] * 2, []),
    18: Row("A glass of water next to a cup.", ["cup"], [("cup", "cup")], []),
    # irregular "oxen" -> "ox"; "cattle" has no rule; "calf"
    19: Row("Oxen and cattle graze near a calf.", ["cow"], [("ox", "cow"), ("cattle", "cow"), ("calf", "cow")], []),
    # "knives" -> "knife" ([nlw]i-ves), commas split
    20: Row("Three knives, two forks and a spoon.", ["knife", "fork"],
            [("knife", "knife"), ("fork", "fork"), ("spoon", "spoon")], ["spoon"]),
    # "mice" -> "mouse" ([m|l]ice)
    21: Row("Mice near a keyboard and a laptop.", ["mouse", "keyboard", "laptop"],
            [("mouse", "mouse"), ("keyboard", "keyboard"), ("laptop", "laptop")], []),
    # "scissors" is uninflected
    22: Row("Scissors and a toothbrush on the sink.", ["scissors", "sink"],
            [("scissors", "scissors"), ("toothbrush", "toothbrush"), ("sink", "sink")], ["toothbrush"]),
    # "skis" -> "ski"; the singular "ski" stays
    23: Row("A skier holds skis and a ski pole.", [P, "skis"], [("skier", P), ("ski", "skis"), ("ski", "skis")], []),
    # sibilant plurals
    24: Row("Benches, couches and sandwiches.", ["bench"],
            [("bench", "bench"), ("couch", "couch"), ("sandwich", "sandwich")], ["couch", "sandwich"]),
    # "-oes" and "-alves"
    25: Row("Buffaloes and calves near giraffes.", ["cow", "giraffe"],
            [("buffalo", "cow"), ("calf", "cow"), ("giraffe", "giraffe")], []),
    # "policemen" -> "policeman" (irregular suffix), "ladies" -> "lady"; "fire hydrants" merges
    26: Row("Policemen and ladies wait by the fire hydrants.", [P],
            [("policeman", P), ("lady", P), ("fire hydrant", "fire hydrant")], ["fire hydrant"]),
    27: Row("Hot dogs and teddy bears.", ["hot dog"], [("hot dog", "hot dog"), ("teddy bear", "teddy bear")],
            ["teddy bear"]),
    # "passenger train" -> train; "train track" consumes "train"; a plain passenger is a person
    28: Row("Passengers board passenger trains by the train tracks.", ["train"],
            [("passenger", P), ("train", "train")], ["passenger"]),
    # "baby X" / "adult X" do not fire person; "babies" does
    29: Row("Baby elephants and an adult giraffe with their babies.", ["elephant", "giraffe"],
            [("elephant", "elephant"), ("giraffe", "giraffe"), ("baby", P)], ["baby"]),
    # "toilet seats" -> toilet, and every "seat" goes when "toilet" is there
    30: Row("The toilet seats are up and a seat is by the sink.", ["toilet", "sink"],
            [("toilet", "toilet"), ("sink", "sink")], []),
    # " motor bike" (leading space in the original list) never matches; "men" is a person
    31: Row("Men ride motor bikes.", ["motorcycle"], [("man", P)], ["man"], []),
    32: Row("A TV, two tvs and a television.", ["tv"], [("tv", "tv"), ("tv", "tv"), ("television", "tv")], []),
    33: Row("A taxi and two taxis pass a truck.", ["car", "truck"],
            [("taxi", "car"), ("taxi", "car"), ("truck", "truck")], []),
    # "bus's": the clitic splits, then "bus" -> "bu"
    34: Row("The bus's door is open.", ["bus"], [], [], [("bus", "bus")]),
    # "men's": "men" -> "man"
    35: Row("The men's room has a urinal.", ["toilet"], [("man", P), ("urinal", "toilet")], ["man"],
            [("urinal", "toilet")]),
    36: Row("A gentleman with a cellphone and a smartphone.", [P, "cell phone"],
            [("gentleman", P), ("cellphone", "cell phone"), ("smartphone", "cell phone")], []),
    37: Row("Hair driers and a stop sign.", ["hair drier"], [("hair drier", "hair drier"), ("stop sign", "stop sign")],
            ["stop sign"]),
    # irregular "geese" -> "goose"
    38: Row("Geese and ducks by a boat.", ["bird", "boat"], [("goose", "bird"), ("duck", "bird"), ("boat", "boat")],
            []),
    # ". ! ?" break sentences, a final ellipsis splits off
    39: Row("A cat. A dog! A horse? A sheep...", ["cat", D],
            [("cat", "cat"), ("dog", D), ("horse", "horse"), ("sheep", "sheep")], ["horse", "sheep"]),
    # brackets split
    40: Row("(A dog) [a cat] {a bird} <a cow>", [D], [("dog", D), ("cat", "cat"), ("bird", "bird"), ("cow", "cow")],
            ["cat", "bird", "cow"]),
    # brackets inside a word split too; the approximate tokenizer keeps "dog(s"
    41: Row("A dog(s) and a cat(s).", [D], [("dog", D), ("cat", "cat")], ["cat"], []),
    42: Row("Two cakes: a cupcake and a pancake.", ["cake"], [("cake", "cake"), ("cupcake", "cake"),
                                                             ("pancake", "cake")], []),
    # "pizza" keeps its a ("[ti]a" needs t or i), "broccoli" its i ("[octop|vir]i" needs one of those letters)
    43: Row("A pizza, a donut and some broccoli.", ["pizza", "broccoli"],
            [("pizza", "pizza"), ("donut", "donut"), ("broccoli", "broccoli")], ["donut"]),
    # "luggage" is uncountable
    44: Row("A handbag, purses and a suitcase full of luggage.", ["handbag", "suitcase"],
            [("handbag", "handbag"), ("purse", "handbag"), ("suitcase", "suitcase"), ("luggage", "suitcase")], []),
    # "ft." is an abbreviation, "3.5" a number
    45: Row("A cow in 3.5 ft. of snow near a horse.", ["cow"], [("cow", "cow"), ("horse", "horse")], ["horse"]),
    # curly single quotes split on both sides
    46: Row("A ‘dog’ on a ‘surfboard’.", ["surfboard"], [("dog", D), ("surfboard", "surfboard")], ["dog"], []),
    47: Row("Three giraffes, two zebras and an elephant!", ["giraffe", "zebra", "elephant"],
            [("giraffe", "giraffe"), ("zebra", "zebra"), ("elephant", "elephant")], []),
    # "boys'" -> "boys", "'"
    48: Row("A boy's bike and the boys' bikes.", [P, "bicycle"],
            [("boy", P), ("bike", "bicycle"), ("boy", P), ("bike", "bicycle")], []),
    # clitics and "cannot"
    49: Row("It's a dog. Isn't it? Cannot be a cat.", [D], [("dog", D), ("cat", "cat")], ["cat"]),
    50: Row("A laptop computer on a desk next to a monitor.", ["laptop", "dining table"],
            [("laptop computer", "laptop"), ("desk", "dining table"), ("monitor", "tv")], ["monitor"]),
    51: Row("Stop signs and traffic lights at an intersection.", ["stop sign"],
            [("stop sign", "stop sign"), ("traffic light", "traffic light")], ["traffic light"]),
    52: Row("Cows, sheep, a ram and two ewes.", ["cow", "sheep"],
            [("cow", "cow"), ("sheep", "sheep"), ("ram", "sheep"), ("ewe", "sheep")], []),
    # an ellipsis splits without spaces
    53: Row("A dog...a cat", [D], [("dog", D), ("cat", "cat")], ["cat"], [("cat", "cat")]),
    # markdown bold: "*" splits
    54: Row("**Dog**: a puppy on a **couch**.", [D], [("dog", D), ("puppy", D), ("couch", "couch")], ["couch"],
            [("puppy", D)]),
    # hyphens and slashes never split, in either variant
    55: Row("A teddy-bear and a cat/dog.", ["cat"], [], []),
}

DIFFERENT = {2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 15, 16, 31, 34, 35, 41, 46, 53, 54}


@pytest.mark.parametrize("row", ROWS.values(), ids=[f"row{k}" for k in ROWS])
def test_mentions_and_hallucinations_singularize(row):
    assert caption_mentions(row.caption, LISA) == row.mentions
    record = score_caption(row.caption, row.gt, LISA)
    assert [w for w, _ in record["hallucinated"]] == row.hallucinated


@pytest.mark.parametrize("row", ROWS.values(), ids=[f"row{k}" for k in ROWS])
def test_mentions_wordnet(row):
    expected = row.mentions if row.wordnet is None else row.wordnet
    assert caption_mentions(row.caption, LISA, "wordnet") == expected


def test_rows_that_differ_between_variants():
    """The table in docs/eval.md lists exactly these rows."""
    assert len(ROWS) >= 40
    assert {k for k, r in ROWS.items() if r.wordnet is not None and r.wordnet != r.mentions} == DIFFERENT


def test_aggregate_chair_by_hand():
    """Counted by hand from the table above (55 captions).

    singularize: 140 mentions, 37 hallucinated, in 33 captions -> CHAIRi = 37/140, CHAIRs = 33/55.
    wordnet: 128 mentions, 32 hallucinated, in 25 captions -> CHAIRi = 32/128, CHAIRs = 25/55.
    """
    for lemmatizer, (n_mentions, n_hall, n_caps) in {"singularize": (140, 37, 33), "wordnet": (128, 32, 25)}.items():
        scores = [score_caption(r.caption, r.gt, LISA, lemmatizer) for r in ROWS.values()]
        assert sum(len(s["mentions"]) for s in scores) == n_mentions
        m = chair_metrics(scores)
        assert m["chair_i"] == pytest.approx(100 * n_hall / n_mentions, abs=1e-12)
        assert m["chair_s"] == pytest.approx(100 * n_caps / 55, abs=1e-12)
    assert f"{100 * 37 / 140:.2f} {100 * 33 / 55:.2f}" == "26.43 60.00"  # vs wordnet 25.00 / 45.45


def _coco(tmp_path):
    ann = tmp_path / "annotations"
    write_json(ann / "instances_val2014.json", {"categories": [{"id": 18, "name": "dog"}],
                                                "annotations": [{"image_id": 1, "category_id": 18}]})
    write_json(ann / "captions_val2014.json", {"annotations": [
        {"image_id": 1, "caption": "Two men walk a dog past a bus."}]})
    return ann


def test_ground_truth_captions_use_the_same_pipeline(tmp_path):
    """The reference extracts ground truth from COCO captions with the same tokenizer and lemmatizer."""
    assert ground_truth_from_coco(_coco(tmp_path), [1], LISA) == {1: ["dog", "person"]}  # men -> man; bus -> bu
    assert ground_truth_from_coco(_coco(tmp_path), [1], LISA, "wordnet") == {1: ["bus", "dog"]}


@pytest.mark.parametrize(("options", "chair_i"), [({}, 0.0), ({"lemmatizer": "wordnet"}, 100 / 3)])
def test_results_record_the_pipeline(tmp_path, quiet_console, options, chair_i):
    """The answer "A man walks a dog near a bus." on image 1.

    singularize: GT {dog, person}; mentions man, dog ("bus" is lost) -> CHAIRi 0/2.
    wordnet: GT {bus, dog}; mentions man, dog, bus -> CHAIRi 1/3.
    """
    images = touch_images(tmp_path / "val2014", ["COCO_val2014_000000000001.jpg"])
    questions = write_jsonl(tmp_path / "chair.jsonl", [{"image_id": 1}])
    opts = {"questions": str(questions), "image_root": str(images), "coco_annotations": str(_coco(tmp_path)),
            **options}
    cfg = from_dict(EvalConfig, {"benchmark": "chair", "out": str(tmp_path / "run"), "options": opts})
    res = run_eval(cfg, ScriptedGenerator(default="A man walks a dog near a bus."), console=quiet_console)
    assert res["metrics"]["chair_i"] == pytest.approx(chair_i)
    lemmatizer = options.get("lemmatizer", "singularize")
    assert res["scorer_version"] == "chair-v2" and res["provenance"]["lemmatizer"] == lemmatizer
    assert res["provenance"]["lemmatizer_version"] == {"singularize": "pattern3.6-singularize-v1",
                                                       "wordnet": "wordnet3.0-noun-table-v1"}[lemmatizer]
    assert res["provenance"]["tokenizer"].startswith({"singularize": "nltk3.10.4", "wordnet": "treebank-approx"}
                                                     [lemmatizer])
    assert res["parser_version"] == f"{res['provenance']['tokenizer']}+{res['provenance']['lemmatizer_version']}"
    written = json.loads((tmp_path / "run" / "chair_ground_truth.json").read_text())
    assert written["lemmatizer"] == res["provenance"]["lemmatizer_version"]
