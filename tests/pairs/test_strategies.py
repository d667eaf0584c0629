"""Each negative strategy end to end on the tiny world and the tiny random-weight LLaVA."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from unprior.formats.pairs import Sample
from unprior.io import read_json
from unprior.models.backends import Decoding
from unprior.models.backends.hf import HFBackend
from unprior.models.generate import Prompt
from unprior.pairs.config import ErrorInjectionConfig, ImageWeakeningConfig, OriginalConfig
from unprior.pairs.loaders import load_samples
from unprior.pairs.merge import iter_run_rows
from unprior.pairs.run import run_pairs
from unprior.pairs.strategies import (
    STRATEGIES,
    StrategyContext,
    clean_injection,
    error_injection,
    image_weakening,
    injection_template,
    original,
)

from .tiny import run_config


class FakeBackend:
    """Records prompts; answers "fake <n>"."""

    name = "fake"
    pixel_noise = False

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def info(self) -> dict:
        return {"backend": "fake", "generator": "fake-llm", "revision": "r1"}

    def generate(self, prompts, decoding, *, seed=0, on_batch=None):
        self.prompts += prompts
        return [f"New answer: fake {len(self.prompts) - len(prompts) + i}" for i in range(len(prompts))]

    def close(self) -> None:
        pass


def test_generated_strategies_end_to_end(tiny_world: Path, tiny_model: Path, tmp_path: Path) -> None:
    strategies = "strategies=[image_weakening,language_bias,vision_bias,rules]"
    cfg = run_config(tiny_world, tiny_model, tmp_path / "out", strategies, "part_size=32")
    assert run_pairs(cfg) == 0
    samples, _ = load_samples(tiny_world)
    rows = list(iter_run_rows(tmp_path / "out"))
    assert sorted(r.id for r in rows) == sorted(s.id for s in samples)  # rules gives every world row a negative
    summary = read_json(tmp_path / "out" / "shard-00000-of-00001" / "summary.json")
    counts = summary["counts"]
    assert counts["samples"] == len(samples) and counts["rows"] == len(rows)
    assert counts["generated"] == {
        s: len(samples) for s in ("image_weakening", "language_bias", "vision_bias", "rules")
    }
    filters = counts["filters"]
    assert filters["negatives_in"] == 4 * len(samples)
    assert filters["negatives_kept"] + sum(filters["dropped"].values()) == filters["negatives_in"]
    assert sum(counts["kept"].values()) == filters["negatives_kept"]
    kinds = Counter(n.kind for r in rows for n in r.negatives)
    assert set(kinds) <= {"image_weakening", "language_bias", "vision_bias", "error_injection"}
    assert kinds["error_injection"] == len(samples)
    by_kind = {n.kind: n.provenance for r in rows for n in r.negatives}
    weak = by_kind["image_weakening"]
    assert weak["perturbation"] == "diffusion_noise" and weak["params"] == {"t": 900} and weak["space"] == "tensor"
    assert weak["decoding"] == {"max_new_tokens": 6, "do_sample": True, "temperature": 0.2, "top_p": 1.0,
                                "top_k": 0, "num_beams": 1}  # fmt: skip
    assert weak["generator"] == str(tiny_model) and weak["revision"].startswith("local-") and "seed" in weak
    assert by_kind["language_bias"]["prompt_view"] == "no_image"
    assert by_kind["vision_bias"]["prompt_view"] == "no_question"
    assert by_kind["vision_bias"]["decoding"] == {"max_new_tokens": 6, "do_sample": False, "num_beams": 3}
    assert by_kind["error_injection"]["strategy"] == "rules" and by_kind["error_injection"]["stats"] == "meta.objects"


def test_image_weakening_in_tensor_and_image_space(tiny_world: Path, tiny_model: Path) -> None:
    samples, _ = load_samples(tiny_world, limit=3)
    images = [s.open_image() for s in samples]
    backend = HFBackend.from_config(run_config(tiny_world, tiny_model, Path("unused")).generator)
    ctx = StrategyContext(generator=backend, seed=1, sampling_seed=2)
    cfg = ImageWeakeningConfig()
    cfg.decoding.max_new_tokens = 4
    tensor = image_weakening(samples, images, cfg, ctx)
    assert tensor == image_weakening(samples, images, cfg, ctx)  # seeded noise and sampling
    cfg.space = "image"
    pil = image_weakening(samples, images, cfg, ctx)
    assert [n[0].provenance["space"] for n in pil] == ["image"] * 3
    cfg.perturbation, cfg.params = "blur", {"sigma": 2.0}
    blur = image_weakening(samples, images, cfg, ctx)
    assert blur[0][0].provenance["params"] == {"sigma": 2.0}
    fake = FakeBackend()
    with pytest.raises(ValueError, match="cannot noise pixel tensors"):
        image_weakening(samples, images, ImageWeakeningConfig(space="tensor"), StrategyContext(generator=fake))
    # auto picks image space for a backend without pixel-tensor access; the image handed over is noised
    out = image_weakening(samples, images, ImageWeakeningConfig(), StrategyContext(generator=fake))
    assert out[0][0].provenance["space"] == "image" and fake.prompts[0].image.tobytes() != images[0].tobytes()


def test_error_injection_templates_and_cleaning() -> None:
    describe = Sample("a", None, "Describe the image.", "A red apple.", meta={"task": "describe"})
    caption = Sample("b", None, "Write a detailed caption.", "A dog on a sofa.")
    qa = Sample("c", None, "What color is the apple?", "The apple is red.")
    assert [injection_template(s, "auto") for s in (describe, caption, qa)] == ["description", "description", "qa"]
    assert injection_template(qa, "description") == "description"
    fake = FakeBackend()
    out = error_injection([describe, qa], [None, None], ErrorInjectionConfig(), StrategyContext(injector=fake))
    assert [n[0].text for n in out] == ["fake 0", "fake 1"]  # the echoed label is stripped
    assert "Description: A red apple." in fake.prompts[0].text and fake.prompts[0].image is None
    assert "Question: What color is the apple?\nAnswer: The apple is red.\nNew answer:" in fake.prompts[1].text
    prov = out[1][0].provenance
    assert prov["template"] == "qa" and prov["strategy"] == "error_injection" and prov["generator"] == "fake-llm"
    assert prov["decoding"] == {"max_new_tokens": 512, "do_sample": True, "temperature": 0.8, "top_p": 0.95,
                                "top_k": 0, "num_beams": 1}  # fmt: skip
    assert clean_injection('Modified response: "The pig is blue."\n\nQuestion: next') == "The pig is blue."


def test_error_injection_against_transformers_serve(served_llm, tiny_world: Path, tmp_path: Path) -> None:
    url, model = served_llm
    cfg = run_config(
        tiny_world, Path("unused"), tmp_path / "out", "strategies=[error_injection]", "load.limit=6",
        "injector.backend=openai", f"injector.base_url={url}", f"injector.model={model}",
        "error_injection.decoding.max_new_tokens=6", "generator.model=",
    )  # fmt: skip
    assert run_pairs(cfg) == 0
    summary = read_json(tmp_path / "out" / "shard-00000-of-00001" / "summary.json")
    assert summary["counts"]["generated"] == {"error_injection": 6}
    rows = list(iter_run_rows(tmp_path / "out"))
    for row in rows:
        (neg,) = row.negatives
        assert neg.kind == "error_injection" and neg.provenance["backend"] == "openai"
        assert neg.provenance["template"] in ("description", "qa")


def test_original_keeps_rejected_and_napo_columns() -> None:
    samples = [
        Sample("a", None, "Q?", "Good.", rejected="Bad.", meta={"question_only": "Prior.", "image_only": "Looks."}),
        Sample("b", None, "Q?", "Good."),
    ]
    out = original(samples, [None, None], OriginalConfig(), StrategyContext())
    assert [(n.kind, n.text) for n in out[0]] == [
        ("original", "Bad."), ("language_bias", "Prior."), ("vision_bias", "Looks.")
    ]  # fmt: skip
    assert out[1] == []
    assert [
        n.kind for n in original(samples, [None, None], OriginalConfig(bias_columns=False), StrategyContext())[0]
    ] == ["original"]


def test_rules_is_the_default_and_needs_no_model(tiny_world: Path, tmp_path: Path) -> None:
    from unprior.config import load_config
    from unprior.pairs.config import PairsConfig

    cfg = load_config(PairsConfig, None, [f"source={tiny_world}", f"out={tmp_path}", "progress=false"])
    assert cfg.strategies == ["rules"] and run_pairs(cfg) == 0
    rows = list(iter_run_rows(tmp_path))
    assert rows and all(n.provenance["strategy"] == "rules" for r in rows for n in r.negatives)
    assert set(STRATEGIES) == {
        "image_weakening",
        "error_injection",
        "rules",
        "language_bias",
        "vision_bias",
        "original",
    }


def test_bias_strategies_generate_once_per_distinct_prompt(tiny_world: Path) -> None:
    samples, _ = load_samples(tiny_world, limit=12)
    images = [s.open_image() for s in samples]
    fake = FakeBackend()
    ctx = StrategyContext(generator=fake)
    STRATEGIES["vision_bias"].run(samples, images, run_config(tiny_world, Path("m"), Path("o")).vision_bias, ctx)
    assert len(fake.prompts) == len({s.image for s in samples}) and all(p.text == "" for p in fake.prompts)
    fake.prompts.clear()
    out = STRATEGIES["language_bias"].run(
        samples, images, run_config(tiny_world, Path("m"), Path("o")).language_bias, ctx
    )
    assert len(fake.prompts) == len({s.prompt for s in samples}) and all(p.image is None for p in fake.prompts)
    assert len(out) == len(samples)
    assert Decoding().as_dict() == {"max_new_tokens": 512, "do_sample": False, "num_beams": 1}
