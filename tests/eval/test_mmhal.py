"""MMHal-Bench and the judge client: rating parser, metrics by hand, retries and the cache against a local
OpenAI-compatible server."""

from __future__ import annotations

import json
import time

import pytest

from unprior.config import ConfigError, from_dict
from unprior.eval.benchmarks.mmhal import TYPES, mmhal_metrics, parse_rating
from unprior.eval.config import EvalConfig
from unprior.eval.judge import Judge, JudgeConfig, JudgeError, cache_key
from unprior.eval.registry import DataError, make_benchmark
from unprior.eval.runner import run_eval

from .fake_openai import FakeOpenAI
from .helpers import touch_images, write_json


@pytest.mark.parametrize(
    ("output", "rating"),
    [
        ("The response is accurate and detailed.\nRating: 5", 5),
        ("rating: 0", 0),
        ("Explanation... RATING: 6", 6),
        ("Rating: 2. On reflection, Rating: 4", None),  # two ratings: the reference scores 0
        ("I would rate this a 4.", None),  # no "rating: s"
        ("Rating:4", None),  # the reference needs the space
        ("Rating: 7", None),
        ("", None),
    ],
)
def test_parse_rating(output, rating):
    assert parse_rating(output) == rating


def test_mmhal_metrics_by_hand():
    """Ratings 6, 3, 2, 0 on types attribute, attribute, counting, other.

    score = 11/4; hallucination rate = 2/4 (ratings < 3); informativeness = mean(3, 0, 2, 0) / 3 * 100.
    """
    m = mmhal_metrics([6, 3, 2, 0], ["attribute", "attribute", "counting", "other"])
    assert m["score"] == pytest.approx(2.75)
    assert m["hallucination_rate"] == pytest.approx(0.5)
    assert m["informativeness"] == pytest.approx(100 * 5 / 4 / 3)
    assert m["type/attribute"] == 4.5 and m["type/counting"] == 2.0 and m["type/other"] == 0.0


def test_judge_retries_then_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test-secret")
    with FakeOpenAI(lambda prompt: f"echo {prompt}\nRating: 4", fail_with=[500, 429]) as server:
        cfg = JudgeConfig(base_url=server.base_url, model="judge-1", api_key_env="JUDGE_KEY", backoff_s=0.0,
                          timeout_s=10)
        delays = []
        judge = Judge(cfg, tmp_path / "cache.jsonl", sleep=delays.append)
        assert judge.ask("q1") == "echo q1\nRating: 4"
        assert len(server.requests) == 3 and judge.requests == 3  # 500, 429, then success
        assert delays == [0.0, 0.0]
        assert server.headers[0]["authorization"] == "Bearer sk-test-secret"
        assert server.requests[-1]["model"] == "judge-1" and server.requests[-1]["temperature"] == 0.0
        assert judge.ask("q1") == "echo q1\nRating: 4" and len(server.requests) == 3  # in-memory cache

        again = Judge(cfg, tmp_path / "cache.jsonl")  # a new process: the file cache answers
        assert again.ask("q1") == "echo q1\nRating: 4" and len(server.requests) == 3
        other_model = Judge(JudgeConfig(**{**cfg.__dict__, "model": "judge-2"}), tmp_path / "cache.jsonl")
        other_model.ask("q1")
        assert len(server.requests) == 4  # the cache key includes the judge model
    rows = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == [cache_key("judge-1", "q1"), cache_key("judge-2", "q1")]
    assert "sk-test-secret" not in (tmp_path / "cache.jsonl").read_text()


def test_judge_gives_up_and_does_not_retry_client_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test-secret")
    with FakeOpenAI(lambda p: "Rating: 1", fail_with=[401]) as server:
        cfg = JudgeConfig(base_url=server.base_url, model="m", api_key_env="JUDGE_KEY", backoff_s=0.0)
        with pytest.raises(JudgeError, match=r"HTTP 401.*is \$JUDGE_KEY set\?") as err:
            Judge(cfg, tmp_path / "c.jsonl").ask("q")
        assert "sk-test-secret" not in str(err.value) and len(server.requests) == 1
    with FakeOpenAI(lambda p: "Rating: 1", fail_with=[503] * 10) as server:
        cfg = JudgeConfig(base_url=server.base_url, model="m", backoff_s=0.0, max_retries=2)
        with pytest.raises(JudgeError, match="still failing after 3 tries: HTTP 503"):
            Judge(cfg, tmp_path / "c.jsonl").ask("q")
        assert len(server.requests) == 3
    assert not (tmp_path / "c.jsonl").exists() or (tmp_path / "c.jsonl").read_text() == ""


def test_judge_connection_refused_fails_fast_naming_the_url(tmp_path):
    with FakeOpenAI(lambda p: "") as server:
        url = server.base_url
    cfg = JudgeConfig(base_url=url, model="m", timeout_s=2)  # default retries and backoff: minutes if retried
    judge = Judge(cfg, tmp_path / "c.jsonl")
    start = time.perf_counter()
    with pytest.raises(JudgeError, match=rf"judge {url} \(m\): connection refused \(2 tries\)"):
        judge.ask("q")
    assert judge.requests == 2 and time.perf_counter() - start < 5


def test_judge_redacts_a_key_the_server_echoes(tmp_path, monkeypatch, caplog):
    key = "sk-proj-0123456789abcdefSECRET"
    monkeypatch.setenv("JUDGE_KEY", key)
    with FakeOpenAI(lambda p: "Rating: 1", fail_with=[500, 401], echo_key=True) as server:
        cfg = JudgeConfig(base_url=server.base_url, model="m", api_key_env="JUDGE_KEY", backoff_s=0.0)
        with pytest.raises(JudgeError, match=r"HTTP 401") as err:
            Judge(cfg, tmp_path / "c.jsonl").ask("q")
        assert server.headers[0]["authorization"] == f"Bearer {key}"  # the server did get (and echo) the key
    assert "[redacted]" in str(err.value)
    for text in (str(err.value), caplog.text):
        assert key not in text and key[:12] not in text and key[-10:] not in text


# Recorded-style judge transcripts keyed by the model answer they rate.
TRANSCRIPT = {
    "A red car parked by a tree.": "The response matches the standard answer and the image contents.\nRating: 5",
    "Two dogs.": "The image shows one dog; the response hallucinates a second dog.\nRating: 1",
    "I cannot tell.": "No hallucination, but the response is not informative.\nRating: 3",
    "A blue bus.": "Contradicts the image contents. Rating: 2. Being lenient, Rating: 3",  # two ratings -> 0
}


def _judge_reply(prompt: str) -> str:
    answer = prompt.split("LMM response to evaluate: ", 1)[1].strip()
    return TRANSCRIPT.get(answer, "Detailed and correct.\nRating: 6")


def _mmhal_data(tmp_path):
    answers = ["A red car parked by a tree.", "Two dogs.", "I cannot tell.", "A blue bus."] + ["Fine."] * 4
    records = [{"question_type": t, "question_topic": "x", "image_id": f"id{i}",
                "image_src": f"https://farm.example/photos/{i}_abc_o.jpg", "image_content": ["Car", "Tree"],
                "question": f"Question {i} about the {t}?", "gt_answer": "A red car.", "model_answer": ""}
               for i, t in enumerate(TYPES)]
    template = write_json(tmp_path / "mmhal" / "response_template.json", records)
    images = touch_images(tmp_path / "mmhal" / "images", [f"{i}_abc_o.jpg" for i in range(8)])
    return template, images, {f"Question {i} ": a for i, a in enumerate(answers)}


def test_mmhal_run_uses_judge_once_per_item(tmp_path, quiet_console):
    template, images, answers = _mmhal_data(tmp_path)

    def gen(reqs):
        return [next(a for k, a in answers.items() if r.prompt.startswith(k)) for r in reqs]

    with FakeOpenAI(_judge_reply, fail_with=[500]) as server:
        opts = {"template": str(template), "image_root": str(images),
                "judge": {"base_url": server.base_url, "model": "gpt-4-test", "backoff_s": 0.0}}
        cfg = from_dict(EvalConfig, {"benchmark": "mmhal", "out": str(tmp_path / "run"), "options": opts})
        res = run_eval(cfg, gen, console=quiet_console)
        assert len(server.requests) == 9  # one retried 500 + 8 items
        prompt = server.requests[-1]["messages"][0]["content"]
        assert "Objects in the image: Car, Tree" in prompt and "Standard answer: A red car." in prompt
        # ratings 5, 1, 3, 0 (two ratings), then 6 x 4
        m = res["metrics"]
        assert m["score"] == pytest.approx((5 + 1 + 3 + 0 + 24) / 8)
        assert m["hallucination_rate"] == pytest.approx(2 / 8)
        assert m["type/attribute"] == 5 and m["type/comparison"] == 3 and m["type/counting"] == 0
        assert res["provenance"]["judge_model"] == "gpt-4-test"
        assert res["provenance"]["judge_prompt"] == "unprior-mmhal-v1"
        assert res["provenance"]["judge_response_models"] == ["gpt-4-test"]
        scores = [json.loads(line) for line in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
        assert scores[3]["rating"] == 0 and scores[3]["rating_found"] is False
        assert scores[0]["judge_output"].endswith("Rating: 5")

        # a second run (e.g. after a kill, or to re-aggregate) asks the judge nothing
        before = len(server.requests)
        res2 = run_eval(cfg, None, console=quiet_console)
        assert len(server.requests) == before and res2["metrics"] == res["metrics"]


def test_mmhal_options_and_data_errors(tmp_path):
    template, images, _ = _mmhal_data(tmp_path)
    with pytest.raises(ConfigError, match=r"options\.judge\.base_url"):
        make_benchmark("mmhal", {"template": "t", "image_root": "i", "judge": {"base_url": "localhost:8000"}})
    bad_prompt = tmp_path / "prompt.txt"
    bad_prompt.write_text("Rate $response only.")
    with pytest.raises(DataError, match=r"no placeholder for \['image_content', 'question', 'gt_answer'\]"):
        make_benchmark("mmhal", {"template": str(template), "image_root": str(images),
                                 "judge_prompt": str(bad_prompt)})
    records = json.loads(template.read_text())
    del records[2]["gt_answer"]
    template.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"response_template.json\[2\]: missing field 'gt_answer'"):
        make_benchmark("mmhal", {"template": str(template), "image_root": str(images)}).load()
