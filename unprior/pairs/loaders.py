"""Loaders: read users' datasets into :class:`~unprior.formats.pairs.Sample` rows, reporting every row they drop.

Formats (``LoadConfig.format``; ``auto`` sniffs it from the path and the first row's keys or the table's columns):

- ``unprior``: a dataset root with ``<split>.jsonl`` (id, image relative to the root, prompt, answer, task, meta,
  optional rejected) and PNGs under ``images/``, as written by ``unprior world build``.
- ``llava``: LLaVA conversation JSON (``id``, ``image``, ``conversations`` of human/gpt turns with ``<image>`` in the
  text), and LLaMA-Factory's sharegpt preference rows (``conversations`` + ``chosen`` / ``rejected`` + ``images``).
- ``hf``: any table (a ``datasets.save_to_disk`` directory, a parquet file or a directory of parquet files, or
  JSON/JSONL) whose columns are mapped onto the sample fields by ``LoadConfig.columns`` or common names.
- ``rlaifv``: RLAIF-V / RLAIF-V-Bias parquet (``ds_name, image, question, chosen, rejected, origin_dataset,
  origin_split, idx, image_path`` and, for RLAIF-V-Bias, NaPO's ``question_only`` and ``image_only`` answers, which
  are kept in ``meta``; docs/papers.md, NaPO part 1).
- ``trl``: TRL preference rows (``prompt`` / ``chosen`` / ``rejected`` as strings or conversational messages, and
  ``images`` or ``image``), from parquet, a saved dataset or JSON/JSONL.

Validation never stops the load: a bad row is recorded in the :class:`LoadReport` (where, id when known, reason,
detail) and the load goes on with the next row. Reasons are the keys of :data:`REASONS`.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unprior.formats.pairs import ImageRef, Sample
from unprior.io import InputError
from unprior.pairs.config import LoadConfig
from unprior.pairs.images import RowProblem, check_image, resolve_image_path
from unprior.pairs.sources import open_source, sniff_format

REASONS = {
    "bad_row": "not a JSON object, malformed JSON, a missing required field or a malformed conversation",
    "not_utf8": "the row holds bytes that are not UTF-8 (the rest of the file is still read)",
    "non_text_field": "a text field (id, prompt, answer, rejected) holds a non-string value",
    "empty_prompt": "the prompt is empty once image tokens are removed",
    "empty_answer": "the reference answer is empty",
    "no_image": "the row has no image",
    "multiple_images": "the row has more than one image (unsupported)",
    "multi_turn": "a preference row whose prompt has several user turns (unsupported)",
    "missing_image": "the image file does not exist",
    "image_outside_root": "the image path escapes the dataset root",
    "unreadable_image": "the image cannot be opened or fails PIL's verify",
    "image_too_large": "the image has more pixels than max_pixels (decompression-bomb guard)",
    "duplicate_id": "the id was already used by an earlier row",
}
IMAGE_TOKEN = re.compile(r"\s*<image>\s*")


@dataclass
class Problem:
    """One dropped row."""

    where: str
    """``file:line`` (JSONL), ``file[index]`` (JSON list) or ``file:row N`` (tables)."""
    reason: str
    """A key of :data:`REASONS`."""
    detail: str
    id: str | None = None


@dataclass
class LoadReport:
    """What a load kept and dropped, filled in as the sample iterator is consumed."""

    source: str = ""
    format: str = ""
    root: str = ""
    """The resolved image root: pass it as ``image_root`` when writing pairs of these samples."""
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Dropped rows by reason."""
    problems: list[Problem] = field(default_factory=list)

    def drop(self, where: str, problem: RowProblem, id: str | None = None) -> None:
        self.dropped[problem.reason] += 1
        self.problems.append(Problem(where, problem.reason, problem.detail, id))

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self, max_problems: int = 20) -> str:
        """Counts by reason, then the first ``max_problems`` dropped rows."""
        lines = [f"{self.source} ({self.format}): kept {self.kept}, dropped {self.n_dropped}"]
        lines += [f"  {reason}: {n}" for reason, n in self.dropped.most_common()]
        for p in self.problems[:max_problems]:
            label = f"id {p.id} ({p.where})" if p.id is not None else p.where
            lines.append(f"  - {label}: {p.reason}: {p.detail}")
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the stage's manifest."""
        return {
            "source": self.source,
            "format": self.format,
            "root": self.root,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "problems": [dataclasses.asdict(p) for p in self.problems],
        }


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RowProblem("non_text_field", f"{name} is {type(value).__name__}, not text")
    return value


def _content_text(content: Any, name: str) -> str:
    """Text of a chat message's content: a string, or a list of parts whose text parts are joined."""
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "".join(_text(p.get("text"), name) for p in parts)
    return _text(content, name)


def _require(row: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise RowProblem("bad_row", f"missing field {', '.join(repr(k) for k in missing)}")


def _guess_id(row: dict[str, Any]) -> str | None:
    value = row.get("id", row.get("idx"))
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


@dataclass
class _Ctx:
    cfg: LoadConfig
    root: Path
    index: int
    """Position of the raw row in the source (fallback id)."""
    columns: dict[str, str]
    """Sample field -> source column, for format hf."""
    checked: dict[Path, tuple[str, str] | None]
    """Image files checked so far in this load, with their problem (reason, detail) if any."""


Candidate = dict[str, Any]
"""Unvalidated sample fields: id, image (raw value), prompt, answer, rejected, meta."""


def _from_unprior(row: dict[str, Any], ctx: _Ctx) -> Iterator[Candidate]:
    _require(row, "id", "image", "prompt", "answer")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise RowProblem("bad_row", f"meta is {type(meta).__name__}, not an object")
    if "task" in row:
        meta = {"task": row["task"], **meta}
    yield {
        "id": row["id"],
        "image": row["image"],
        "prompt": row["prompt"],
        "answer": row["answer"],
        "rejected": row.get("rejected"),
        "meta": meta,
    }


_HUMAN, _ASSISTANT = ("human", "user"), ("gpt", "assistant")


def _turns(messages: Any) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(role, text) of each non-system turn, roles normalised to human/gpt; system text goes into meta."""
    if not isinstance(messages, list):
        raise RowProblem("bad_row", "conversations is not a list")
    turns, meta = [], {}
    for m in messages:
        if not isinstance(m, dict):
            raise RowProblem("bad_row", "a conversation turn is not an object")
        role = m.get("from", m.get("role"))
        text = _content_text(m.get("value", m.get("content")), "conversation turn")
        if role == "system":
            meta["system"] = text
        elif role in _HUMAN or role in _ASSISTANT:
            turns.append(("human" if role in _HUMAN else "gpt", text))
        else:
            raise RowProblem("bad_row", f"unknown conversation role {role!r}")
    return turns, meta


def _reply_text(value: Any, name: str) -> Any:
    """A LLaMA-Factory chosen/rejected reply: the text of a message object, else the value as is (checked later)."""
    if isinstance(value, dict):
        return _content_text(value.get("value", value.get("content")), name)
    return value


def _from_llava(row: dict[str, Any], ctx: _Ctx) -> Iterator[Candidate]:
    key = "conversations" if "conversations" in row else "messages"
    _require(row, key)
    turns, meta = _turns(row[key])
    image = row.get("image", row.get("images"))
    base_id = _guess_id(row) or str(ctx.index)
    if "chosen" in row:  # LLaMA-Factory ranking row: the conversation is the prompt
        if [r for r, _ in turns] != ["human"]:
            raise RowProblem("multi_turn", f"prompt has turns {[r for r, _ in turns]}; expected one human turn")
        answer, rejected = _reply_text(row["chosen"], "chosen"), _reply_text(row.get("rejected"), "rejected")
        yield {
            "id": base_id,
            "image": image,
            "prompt": turns[0][1],
            "answer": answer,
            "rejected": rejected,
            "meta": meta,
        }
        return
    roles = [r for r, _ in turns]
    if not turns or len(turns) % 2 or roles != ["human", "gpt"] * (len(turns) // 2):
        raise RowProblem("bad_row", f"conversation does not alternate human/gpt: {roles}")
    n_pairs = 1 if ctx.cfg.llava_turns == "first" else len(turns) // 2
    for k in range(n_pairs):
        sample_id = base_id if k == 0 else f"{base_id}#{k}"
        prompt, answer = turns[2 * k][1], turns[2 * k + 1][1]
        yield {"id": sample_id, "image": image, "prompt": prompt, "answer": answer, "meta": {**meta, "turn": k}}


_DEFAULT_COLUMNS = {
    "id": ("id", "idx", "sample_id", "question_id"),
    "image": ("image", "images", "img"),
    "prompt": ("prompt", "question", "instruction", "query"),
    "answer": ("answer", "response", "output", "chosen"),
    "rejected": ("rejected",),
}


def map_columns(columns: Iterable[str], overrides: dict[str, str]) -> dict[str, str]:
    """Sample field -> source column for format hf; raises ValueError if prompt, answer or image has no column."""
    available = list(columns)
    mapping = {}
    for name, candidates in _DEFAULT_COLUMNS.items():
        if name in overrides:
            if overrides[name] not in available:
                raise InputError(f"columns.{name}={overrides[name]!r} is not a column; columns: {available}")
            mapping[name] = overrides[name]
            continue
        found = next((c for c in candidates if c in available), None)
        if found is not None:
            mapping[name] = found
        elif name in ("image", "prompt", "answer"):
            raise InputError(f"no {name} column among {available}; set load.columns.{name}")
    return mapping


def _from_hf(row: dict[str, Any], ctx: _Ctx) -> Iterator[Candidate]:
    cols = ctx.columns
    used = set(cols.values())
    meta = {k: v for k, v in row.items() if k not in used and isinstance(v, str | int | float | bool)}
    yield {
        "id": row[cols["id"]] if "id" in cols else str(ctx.index),
        "image": row[cols["image"]],
        "prompt": row[cols["prompt"]],
        "answer": row[cols["answer"]],
        "rejected": row[cols["rejected"]] if "rejected" in cols else None,
        "meta": meta,
    }


_RLAIFV_META = ("ds_name", "origin_dataset", "origin_split", "image_path", "question_only", "image_only")


def _from_rlaifv(row: dict[str, Any], ctx: _Ctx) -> Iterator[Candidate]:
    _require(row, "image", "question", "chosen")
    idx, ds_name = row.get("idx"), row.get("ds_name")
    sample_id = f"{ds_name}-{idx}" if ds_name is not None and idx is not None else idx
    yield {
        "id": sample_id if sample_id is not None else str(ctx.index),
        "image": row["image"],
        "prompt": row["question"],
        "answer": row["chosen"],
        "rejected": row.get("rejected"),
        "meta": {k: row[k] for k in _RLAIFV_META if row.get(k) is not None},
    }


def _assistant_text(value: Any, name: str) -> str:
    """A TRL completion: a string, or messages holding exactly one assistant turn."""
    if not isinstance(value, list):
        return _text(value, name)
    turns, _ = _turns(value)
    if [r for r, _ in turns] != ["gpt"]:
        raise RowProblem("multi_turn", f"{name} has turns {[r for r, _ in turns]}; expected one assistant turn")
    return turns[0][1]


def _from_trl(row: dict[str, Any], ctx: _Ctx) -> Iterator[Candidate]:
    _require(row, "prompt", "chosen")
    prompt, meta = row["prompt"], {}
    if isinstance(prompt, list):
        turns, meta = _turns(prompt)
        if [r for r, _ in turns] != ["human"]:
            raise RowProblem("multi_turn", f"prompt has turns {[r for r, _ in turns]}; expected one user turn")
        prompt = turns[0][1]
    rejected = row.get("rejected")
    yield {
        "id": _guess_id(row) or str(ctx.index),
        "image": row.get("images", row.get("image")),
        "prompt": prompt,
        "answer": _assistant_text(row["chosen"], "chosen"),
        "rejected": _assistant_text(rejected, "rejected") if rejected is not None else None,
        "meta": meta,
    }


Mapper = Callable[[dict[str, Any], _Ctx], Iterator[Candidate]]
MAPPERS: dict[str, Mapper] = {
    "unprior": _from_unprior,
    "llava": _from_llava,
    "hf": _from_hf,
    "rlaifv": _from_rlaifv,
    "trl": _from_trl,
}


def _image_ref(value: Any, root: Path) -> ImageRef:
    """Turn a raw image value (path string, ``{"bytes", "path"}`` struct, bytes, or a one-item list) into a ref."""
    if isinstance(value, list):
        if not value:
            raise RowProblem("no_image", "the image list is empty")
        if len(value) > 1:
            raise RowProblem("multiple_images", f"{len(value)} images")
        value = value[0]
    if value is None:
        raise RowProblem("no_image", "no image given")
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
        if value is None:
            raise RowProblem("no_image", "image struct has neither bytes nor path")
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise RowProblem("no_image", "empty image path")
        return resolve_image_path(root, value)
    raise RowProblem("unreadable_image", f"unsupported image value of type {type(value).__name__}")


def _checked_image(value: Any, ctx: _Ctx) -> ImageRef:
    """The image reference of a raw value, checked; a file is opened once per load however many rows share it."""
    ref = _image_ref(value, ctx.root)
    if not ctx.cfg.check_images:
        return ref
    if isinstance(ref, bytes):
        check_image(ref, ctx.cfg.max_pixels)
        return ref
    if ref not in ctx.checked:
        try:
            check_image(ref, ctx.cfg.max_pixels)
            ctx.checked[ref] = None
        except RowProblem as e:
            ctx.checked[ref] = (e.reason, e.detail)
    problem = ctx.checked[ref]
    if problem is not None:
        raise RowProblem(*problem)
    return ref


def _build(cand: Candidate, ctx: _Ctx) -> Sample:
    """Validate one candidate into a Sample; raises RowProblem."""
    raw_id = cand["id"]
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise RowProblem("non_text_field", f"id is {type(raw_id).__name__}, not text")
    prompt = IMAGE_TOKEN.sub(" ", _text(cand["prompt"], "prompt")).strip()
    if not prompt:
        raise RowProblem("empty_prompt", "prompt is empty")
    answer = _text(cand["answer"], "answer")
    if not answer.strip():
        raise RowProblem("empty_answer", "answer is empty")
    rejected = cand.get("rejected")
    if rejected is not None and not _text(rejected, "rejected").strip():
        rejected = None
    image = _checked_image(cand["image"], ctx)
    return Sample(str(raw_id), image, prompt, answer, rejected, cand.get("meta") or {})


def iter_samples(
    path: str | Path, cfg: LoadConfig | None = None, report: LoadReport | None = None
) -> Iterator[Sample]:
    """Stream validated samples from ``path``; dropped rows are recorded in ``report`` as the iterator advances.

    Args:
        path: A dataset directory or file (see the module docstring for the formats).
        cfg: Loader options; default ``LoadConfig()``.
        report: Filled in while iterating; pass one to read it afterwards.

    Raises:
        FileNotFoundError, ValueError: for problems with the source as a whole (no such path, no rows file, no
            prompt column); problems with single rows are reported, not raised.
    """
    cfg = cfg or LoadConfig()
    cfg.validate()
    report = report if report is not None else LoadReport()
    path = Path(path)
    source = open_source(path, cfg)
    fmt = cfg.format
    if fmt == "auto":
        fmt = "unprior" if source.is_unprior_root else sniff_format(source.columns)
    report.source, report.format, report.root = str(path), fmt, str(source.root.resolve())
    columns = map_columns(source.columns, cfg.columns) if fmt == "hf" else {}
    mapper, seen = MAPPERS[fmt], set()
    checked: dict[Path, tuple[str, str] | None] = {}
    for index, (where, raw) in enumerate(source.rows):
        if isinstance(raw, RowProblem):
            report.drop(where, raw)
            continue
        ctx = _Ctx(cfg, source.root, index, columns, checked)
        try:
            candidates = list(mapper(raw, ctx))
        except RowProblem as e:
            report.drop(where, e, _guess_id(raw))
            continue
        for cand in candidates:
            cand_id = str(cand["id"]) if isinstance(cand["id"], str | int) else None
            try:
                sample = _build(cand, ctx)
            except RowProblem as e:
                report.drop(where, e, cand_id)
                continue
            if sample.id in seen:
                report.drop(where, RowProblem("duplicate_id", f"id {sample.id!r} seen before"), sample.id)
                continue
            seen.add(sample.id)
            report.kept += 1
            yield sample
            if cfg.limit and report.kept >= cfg.limit:
                return


def load_samples(path: str | Path, cfg: LoadConfig | None = None, **overrides: Any) -> tuple[list[Sample], LoadReport]:
    """Load and validate all samples of ``path``.

    Args:
        path: A dataset directory or file.
        cfg: Loader options; default ``LoadConfig()``.
        **overrides: Fields replaced in ``cfg`` (e.g. ``format="llava"``, ``max_pixels=10**7``).

    Returns:
        The kept samples and the report of what was dropped and why.
    """
    cfg = dataclasses.replace(cfg or LoadConfig(), **overrides)
    report = LoadReport()
    samples = list(iter_samples(path, cfg, report))
    return samples, report


def load_unprior_jsonl(path: str | Path, cfg: LoadConfig | None = None, **kw: Any) -> tuple[list[Sample], LoadReport]:
    """Our own format: a root with ``<split>.jsonl`` and ``images/``, or one such JSONL file."""
    return load_samples(path, cfg, **{**kw, "format": "unprior"})


def load_llava_json(path: str | Path, cfg: LoadConfig | None = None, **kw: Any) -> tuple[list[Sample], LoadReport]:
    """LLaVA conversation JSON or LLaMA-Factory sharegpt preference JSON; images relative to ``root``."""
    return load_samples(path, cfg, **{**kw, "format": "llava"})


def load_hf_dataset(path: str | Path, cfg: LoadConfig | None = None, **kw: Any) -> tuple[list[Sample], LoadReport]:
    """A ``save_to_disk`` directory or parquet file(s) with image bytes, columns mapped by ``columns``."""
    return load_samples(path, cfg, **{**kw, "format": "hf"})


def load_rlaifv_parquet(path: str | Path, cfg: LoadConfig | None = None, **kw: Any) -> tuple[list[Sample], LoadReport]:
    """RLAIF-V / RLAIF-V-Bias parquet; NaPO's question_only / image_only answers are kept in ``meta``."""
    return load_samples(path, cfg, **{**kw, "format": "rlaifv"})


def load_trl_preference(path: str | Path, cfg: LoadConfig | None = None, **kw: Any) -> tuple[list[Sample], LoadReport]:
    """TRL preference rows (prompt / chosen / rejected / images); the rejected answer becomes ``Sample.rejected``."""
    return load_samples(path, cfg, **{**kw, "format": "trl"})
