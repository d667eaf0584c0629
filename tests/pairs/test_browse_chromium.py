"""The pair browser in headless Chromium (Debian's ``chromium``, driven by Playwright), opened from ``file://``.

The page loads with no console errors; the kind filter, the margin range (m_Σ and m_μ), the sort, the search and the
pager change the visible rows to exactly the rows the test data implies; data text never becomes HTML; a missing
chunk is reported; a screenshot is written. ``.ci/run`` installs chromium; without it these tests are skipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unprior.pairs.browse import BrowseConfig, write_browser

from .browse_helpers import SEARCH_ROWS, SEARCH_WORD, UNSCORED_ROW, expected_rows, kinds_of, make_pairs, make_score
from .browse_helpers import margin as margin_of

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it: "
                                                          "apt-get install chromium)")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
N, PAGE = 60, 10
ALL = {"image_weakening", "error_injection", "language_bias", "vision_bias"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A scored 60-row browser in chunks of 16 rows, 10 rows per page."""
    tmp = tmp_path_factory.mktemp("browse-site")
    pairs = make_pairs(tmp, N)
    entry = make_score(pairs, N, tmp / "entry")
    out = tmp / "browse"
    write_browser(BrowseConfig(pairs=str(pairs), score=str(entry), out=str(out), chunk_size=16, page_size=PAGE))
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (requirements-dev.txt) is not installed")
    with sync_api.sync_playwright() as p:
        # Playwright gives every launch a new empty profile (user-data-dir), deleted on close.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


class Page:
    """A browser page on one folder's index.html that records console errors and waits for each redraw."""

    def __init__(self, browser, folder: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto((folder / "index.html").as_uri())
        self.page.wait_for_selector("body[data-state=ready]", timeout=15_000)

    def act(self, action) -> None:
        """Run ``action`` and wait until the page has drawn again."""
        before = int(self.page.get_attribute("body", "data-renders") or 0)
        action()
        # A function, not an expression: the page's CSP forbids the eval Playwright uses for expressions.
        self.page.wait_for_function("n => Number(document.body.dataset.renders) > n && "
                                    "document.body.dataset.state === 'ready'", arg=before, timeout=15_000)

    def rows(self) -> list[int]:
        return self.page.eval_on_selector_all("article.row", "els => els.map(e => Number(e.dataset.row))")

    def status(self) -> str:
        return self.page.inner_text("#status")

    def set_range(self, lo: str, hi: str) -> None:
        self.page.fill("#margin-lo", lo)
        self.act(lambda: self.page.fill("#margin-hi", hi) or self.page.dispatch_event("#margin-hi", "change"))


@pytest.fixture
def page(browser, site):
    p = Page(browser, site)
    yield p
    assert p.errors == []
    p.page.close()


def test_loads_without_errors_and_shows_the_first_page(page, tmp_path):
    assert page.rows() == list(range(PAGE))
    assert page.status().startswith(f"{N} of {N} rows")
    assert page.page.locator("figure.histogram").count() == 4
    first = page.page.locator("article.row").first
    assert first.locator("img").count() == 2  # the image and row 0's weakened image
    assert first.locator("img").first.evaluate("img => img.complete && img.naturalWidth") == 32
    shot = tmp_path / "browse.png"
    page.page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_kind_filter(page):
    for kind in ("image_weakening", "error_injection", "language_bias"):
        page.act(lambda kind=kind: page.page.uncheck(f"#kinds input[value={kind}]"))
    expected = expected_rows(N, {"vision_bias"})
    assert len(expected) == 12
    assert page.status().startswith(f"12 of {N} rows")
    assert page.rows() == expected[:PAGE]
    assert page.page.locator("article.row").first.locator("li.negative:not(.dim)").count() == 1


def test_margin_range_on_both_margin_types(page):
    page.set_range("10", "14")
    expected = expected_rows(N, ALL, 10, 14)
    assert page.status().startswith(f"{len(expected)} of {N} rows") and len(expected) < N
    assert page.rows() == expected[:PAGE]
    page.act(lambda: page.page.uncheck("#kinds input[value=error_injection]"))
    assert page.rows() == expected_rows(N, ALL - {"error_injection"}, 10, 14)[:PAGE]
    page.act(lambda: page.page.check("#kinds input[value=error_injection]"))
    page.act(lambda: page.page.select_option("#margin-type", "mean"))
    page.set_range("", "0")  # m_μ = -10/5 - (-10 - m_Σ)/4 = 0.5 + m_Σ/4 <= 0  <=>  m_Σ <= -2
    expected = expected_rows(N, ALL, hi=-2)
    assert page.status().startswith(f"{len(expected)} of {N} rows")
    assert page.rows() == expected[:PAGE]
    page.act(lambda: page.page.click("#margin-clear"))
    assert page.status().startswith(f"{N} of {N} rows")


def test_sort_by_margin(page):
    def key(i: int, pick) -> float:
        return pick(margin_of(i, j) for j in range(len(kinds_of(i))))

    scored = [i for i in range(N) if i != UNSCORED_ROW]
    page.act(lambda: page.page.select_option("#sort", "asc"))
    assert page.rows() == sorted(scored, key=lambda i: (key(i, min), i))[:PAGE]
    page.act(lambda: page.page.select_option("#sort", "desc"))
    assert page.rows() == sorted(scored, key=lambda i: (-key(i, max), i))[:PAGE]
    page.act(lambda: page.page.click(".pager >> nth=0 >> button[data-go=last]"))
    assert page.rows()[-1] == UNSCORED_ROW  # rows without a margin go last


def test_search(page):
    page.act(lambda: page.page.fill("#search", SEARCH_WORD.upper()))
    assert page.rows() == list(SEARCH_ROWS)
    assert page.status().startswith(f"2 of {N} rows")
    page.act(lambda: page.page.fill("#search", "row-00033"))
    assert page.rows() == [33]
    page.act(lambda: page.page.fill("#search", ""))
    assert page.rows() == list(range(PAGE))


def test_paging(page):
    pager = page.page.locator(".pager").first
    page.act(lambda: pager.locator("button[data-go=next]").click())
    assert page.rows() == list(range(10, 20))  # rows of chunks 0 and 1
    page.act(lambda: pager.locator("button[data-go=last]").click())
    assert page.rows() == list(range(50, 60))
    page.act(lambda: pager.locator("button[data-go=prev]").click())
    assert page.rows() == list(range(40, 50))
    page.act(lambda: pager.locator(".page-input").fill("3") or pager.locator(".page-input").dispatch_event("change"))
    assert page.rows() == list(range(20, 30))
    page.page.click("h1")  # arrow keys page only outside form fields
    page.act(lambda: page.page.keyboard.press("ArrowRight"))
    assert page.rows() == list(range(30, 40))
    page.act(lambda: page.page.select_option("#page-size", "25"))
    assert page.rows() == list(range(25))  # a new page size starts again at page 1


def test_histogram_bar_sets_the_range(page):
    page.act(lambda: page.page.locator("figure.histogram.kind-vision_bias rect.hit").nth(0).click())
    lo, hi = float(page.page.input_value("#margin-lo")), float(page.page.input_value("#margin-hi"))
    assert hi > lo
    assert page.rows() == expected_rows(N, ALL, lo, hi)[:PAGE]


def test_data_text_stays_text(browser, tmp_path):
    hostile = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=1</script>"
    row = {"id": "<b>x</b>", "image": None, "prompt": hostile, "chosen": hostile,
           "negatives": [{"text": hostile, "kind": "original", "provenance": {"k": hostile}}], "meta": {"m": hostile}}
    (tmp_path / "pairs.jsonl").write_text(json.dumps(row) + "\n")
    write_browser(BrowseConfig(pairs=str(tmp_path / "pairs.jsonl"), out=str(tmp_path / "browse")))
    p = Page(browser, tmp_path / "browse")
    assert p.page.evaluate("window.pwned") is None
    assert p.page.locator("article.row img").count() == 0
    assert hostile in p.page.inner_text("article.row .prompt")
    assert p.errors == []


def test_a_missing_chunk_is_reported(browser, site, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    (broken / "data" / "chunk-00001.js").unlink()
    p = Page(browser, broken)
    p.page.locator(".pager").first.locator("button[data-go=next]").click()
    p.page.wait_for_selector("body[data-state=error]", timeout=15_000)
    assert "cannot load data/chunk-00001.js" in p.page.inner_text("#error")
