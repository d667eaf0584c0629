/* unprior pairs browser: the page. Draws the header, the controls, one page of rows and the margin histograms
 * (NaPO Fig. 4: one per negative kind) from what browse.js computes, and wires the controls to it. */
"use strict";

(function () {
  const B = window.unpriorBrowse;
  if (!B) return; // browse.js already reported why
  const { INDEX, state } = B;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const BINS = 30;
  const MARGIN_NAMES = { sum: "m_Σ", mean: "m_μ" };

  /** An element with a class and text (always set as text: the data never becomes HTML). */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function fmt(x, digits) {
    return x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toFixed(digits);
  }

  // ------------------------------------------------------------------------------------------- header

  function header() {
    document.title = INDEX.title + " · unprior pairs browser";
    $("title").textContent = INDEX.title;
    const kinds = INDEX.kinds.map((k) => k + " " + INDEX.kind_counts[k]).join(", ");
    $("summary").textContent = INDEX.rows + " rows from " + INDEX.pairs + "; negatives: " + (kinds || "none") + ".";
    const notes = [];
    if (INDEX.score) {
      notes.push("Reference margins from " + INDEX.score.entry + ": m_Σ = log π_ref(chosen) − log π_ref(negative), " +
        "m_μ the same per token. Below 0 the reference already prefers the negative (NaPO: likely noise).");
      const dropped = Object.entries(INDEX.score.dropped).map(([k, v]) => k + " " + v).join(", ");
      if (dropped) notes.push("Rows unprior score did not score (no margins): " + dropped + ".");
    } else {
      notes.push("No reference scores: run unprior score on this pairs file and pass score=<entry> for margins.");
    }
    if (INDEX.weakened && INDEX.kind_counts.image_weakening) {
      notes.push("Weakened images are regenerated from each negative's provenance (the pairs file does not store " +
        "them). Where the noise went on the pixel tensor (space: tensor) the picture has the same perturbation " +
        "and strength in pixel space, not the exact noise.");
    }
    if (INDEX.image_problems) notes.push(INDEX.image_problems + " rows show no image; each says why.");
    $("notes").replaceChildren(...notes.map((n) => el("li", "", n)));
  }

  // ------------------------------------------------------------------------------------------- controls

  function controls() {
    const box = $("kinds");
    INDEX.kinds.forEach((kind, i) => {
      const label = el("label", "kind-toggle kind-" + kind);
      const input = el("input");
      input.type = "checkbox";
      input.checked = true;
      input.value = kind;
      input.addEventListener("change", () => {
        if (input.checked) state.kinds.add(i);
        else state.kinds.delete(i);
        state.page = 0;
        B.refresh();
      });
      label.append(input, " " + kind + " (" + INDEX.kind_counts[kind] + ")");
      box.appendChild(label);
    });
    if (!B.margins) {
      $("margin-controls").hidden = true;
      $("histograms").hidden = true;
    }
    const range = () => {
      const lo = $("margin-lo").value.trim();
      const hi = $("margin-hi").value.trim();
      state.lo = lo === "" ? -Infinity : Number(lo);
      state.hi = hi === "" ? Infinity : Number(hi);
      state.page = 0;
      B.refresh();
    };
    $("margin-lo").addEventListener("change", range);
    $("margin-hi").addEventListener("change", range);
    $("margin-clear").addEventListener("click", () => {
      $("margin-lo").value = "";
      $("margin-hi").value = "";
      range();
    });
    $("margin-type").addEventListener("change", (e) => {
      state.type = e.target.value;
      B.refresh();
    });
    $("sort").addEventListener("change", (e) => {
      state.sort = e.target.value;
      state.page = 0;
      B.refresh();
    });
    let timer = 0;
    $("search").addEventListener("input", (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => B.setQuery(e.target.value), 250);
    });
    const sizes = $("page-size");
    if (![...sizes.options].some((o) => Number(o.value) === state.pageSize)) sizes.add(new Option(state.pageSize));
    sizes.value = String(state.pageSize);
    sizes.addEventListener("change", () => {
      state.pageSize = Number(sizes.value);
      state.page = 0;
      B.refresh(false);
    });
    pager();
  }

  function pager() {
    const go = { first: () => 0, prev: () => state.page - 1, next: () => state.page + 1, last: () => Infinity };
    for (const nav of document.querySelectorAll(".pager")) {
      for (const button of nav.querySelectorAll("button[data-go]")) {
        button.addEventListener("click", () => {
          state.page = go[button.dataset.go]();
          B.refresh(false);
        });
      }
      nav.querySelector(".page-input").addEventListener("change", (e) => {
        state.page = Math.max(0, Number(e.target.value) - 1);
        B.refresh(false);
      });
    }
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea")) return;
      if (e.key === "ArrowRight") state.page += 1;
      else if (e.key === "ArrowLeft") state.page -= 1;
      else return;
      B.refresh(false);
    });
  }

  // ------------------------------------------------------------------------------------------- rows

  function figure(image, caption, className) {
    const fig = el("figure", className);
    if (image && image.src) {
      const img = el("img");
      img.src = image.src;
      img.alt = caption;
      img.loading = "lazy";
      fig.appendChild(img);
    } else {
      fig.appendChild(el("div", "no-image", "no image"));
    }
    fig.appendChild(el("figcaption", "", caption));
    if (image && image.note) fig.appendChild(el("p", "image-note", image.note));
    return fig;
  }

  function provenance(prov) {
    const details = el("details", "provenance");
    details.appendChild(el("summary", "", "provenance"));
    const dl = el("dl");
    for (const [k, v] of Object.entries(prov)) {
      dl.append(el("dt", "", k), el("dd", "", typeof v === "object" ? JSON.stringify(v) : v));
    }
    details.appendChild(dl);
    return details;
  }

  function negative(neg, matches) {
    const li = el("li", "negative kind-" + neg.kind + (matches ? "" : " dim"));
    const head = el("div", "negative-head");
    head.appendChild(el("span", "badge kind-" + neg.kind, neg.kind));
    if ("margin_sum" in neg) {
      for (const type of ["sum", "mean"]) {
        const m = neg["margin_" + type];
        const cls = "margin" + (m !== null && m < 0 ? " below-zero" : "") + (type === state.type ? " current" : "");
        head.appendChild(el("span", cls, MARGIN_NAMES[type] + " " + fmt(m, type === "sum" ? 2 : 3)));
      }
      head.appendChild(el("span", "tokens", neg.tokens + " tokens"));
    }
    li.append(head, el("p", "text", neg.text), provenance(neg.provenance));
    return li;
  }

  function card(rec, ctx) {
    const article = el("article", "row");
    article.dataset.row = rec.row;
    article.dataset.id = rec.id;
    const images = el("div", "images");
    images.appendChild(figure(rec.image, "image", "original"));
    for (const neg of rec.negatives) {
      if (neg.weakened) images.appendChild(figure(neg.weakened, "weakened: " + weakCaption(neg.provenance), "weak"));
    }
    const body = el("div", "body");
    const head = el("div", "row-head");
    head.append(el("span", "row-id", rec.id), el("span", "row-index", "row " + rec.row));
    if (rec.score_note) head.appendChild(el("span", "score-note", rec.score_note));
    body.appendChild(head);
    body.appendChild(labelled("prompt", rec.prompt));
    const chosen = labelled("chosen", rec.chosen);
    if (rec.chosen_logp) {
      chosen.appendChild(el("span", "tokens", "log π_ref " + fmt(rec.chosen_logp[0], 2) + " over " +
        rec.chosen_logp[1] + " tokens"));
    }
    body.appendChild(chosen);
    const list = el("ol", "negatives");
    const base = ctx.first[rec.row];
    rec.negatives.forEach((neg, j) => list.appendChild(negative(neg, ctx.negativeMatches(base + j))));
    body.appendChild(list);
    if (rec.meta && Object.keys(rec.meta).length) {
      const meta = el("details", "meta");
      meta.append(el("summary", "", "meta"), el("pre", "", JSON.stringify(rec.meta, null, 1)));
      body.appendChild(meta);
    }
    article.append(images, body);
    return article;
  }

  function weakCaption(prov) {
    const params = Object.entries(prov.params || {}).map(([k, v]) => k + "=" + v).join(", ");
    return (prov.perturbation || "?") + (params ? " " + params : "");
  }

  function labelled(name, text) {
    const p = el("p", name);
    p.append(el("b", "", name + " "), el("span", "text", text));
    return p;
  }

  function page(recs, ctx) {
    const frag = document.createDocumentFragment();
    for (const rec of recs) frag.appendChild(card(rec, ctx));
    if (!recs.length) frag.appendChild(el("p", "empty", "No row matches these filters."));
    $("rows").replaceChildren(frag);
    for (const nav of document.querySelectorAll(".pager")) {
      nav.querySelector(".page-input").value = String(state.page + 1);
      nav.querySelector(".page-input").max = String(ctx.pages);
      nav.querySelector(".page-count").textContent = String(ctx.pages);
    }
    $("status").textContent = ctx.shown + " of " + INDEX.rows + " rows, " + ctx.matchedNegatives +
      " matching negatives" + (state.query.trim() ? " (search: " + state.query.trim() + ")" : "");
  }

  // ------------------------------------------------------------------------------------------- histograms

  function quantile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(q * (sorted.length - 1))))];
  }

  let bins = null; // {type, lo, hi, counts: {kind index: Int32Array}, below: {...}, n: {...}}

  /** Shared bins over the central 99 % of one margin type (outliers go to the edge bins), counts per kind. */
  function computeBins(margins, kindOf, type) {
    const values = margins[type];
    const finite = values.filter((v) => !Number.isNaN(v)).sort();
    let lo = finite.length ? quantile(finite, 0.005) : -1;
    let hi = finite.length ? quantile(finite, 0.995) : 1;
    if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
    const result = { type, lo, hi, counts: {}, below: {}, n: {} };
    INDEX.kinds.forEach((_, i) => {
      result.counts[i] = new Int32Array(BINS);
      result.below[i] = 0;
      result.n[i] = 0;
    });
    for (let j = 0; j < values.length; j++) {
      const v = values[j];
      if (Number.isNaN(v)) continue;
      const b = Math.min(BINS - 1, Math.max(0, Math.floor(((v - lo) / (hi - lo)) * BINS)));
      result.counts[kindOf[j]][b]++;
      result.n[kindOf[j]]++;
      if (v < 0) result.below[kindOf[j]]++;
    }
    return result;
  }

  function histograms(ctx) {
    if (!ctx.margins) return;
    if (!bins || bins.type !== state.type) bins = computeBins(ctx.margins, ctx.kindOf, state.type);
    const W = 280, H = 96, PAD = 14;
    const x = (v) => PAD + ((v - bins.lo) / (bins.hi - bins.lo)) * (W - 2 * PAD);
    const panels = INDEX.kinds.map((kind, i) => {
      const panel = el("figure", "histogram kind-" + kind + (state.kinds.has(i) ? "" : " dim"));
      const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
      plot.appendChild(svg("title", {})).textContent = kind + " " + MARGIN_NAMES[state.type] + " histogram";
      const counts = bins.counts[i];
      const top = Math.max(1, ...counts);
      const lo = Math.max(state.lo, bins.lo), hi = Math.min(state.hi, bins.hi);
      if ((state.lo > -Infinity || state.hi < Infinity) && hi > lo) {
        plot.appendChild(svg("rect", { class: "range", x: x(lo), y: 0, width: x(hi) - x(lo), height: H - PAD }));
      }
      const step = (bins.hi - bins.lo) / BINS;
      const width = Math.max(1, x(bins.lo + step) - x(bins.lo) - 1);
      counts.forEach((c, b) => {
        const h = (c / top) * (H - 2 * PAD);
        const left = x(bins.lo + b * step) + 0.5;
        plot.appendChild(svg("rect", { class: "bar", x: left, y: H - PAD - h, width, height: h }));
        const hit = svg("rect", { class: "hit", x: left, y: 0, width, height: H - PAD }); // the whole column clicks
        hit.appendChild(svg("title", {})).textContent = `${fmt(bins.lo + b * step, 2)} … ` +
          `${fmt(bins.lo + (b + 1) * step, 2)}: ${c}`;
        hit.addEventListener("click", () => selectRange(bins.lo + b * step, bins.lo + (b + 1) * step));
        plot.appendChild(hit);
      });
      plot.appendChild(svg("text", { x: W - PAD, y: 9, "text-anchor": "end" })).textContent = "max " + top;
      if (bins.lo < 0 && bins.hi > 0) plot.appendChild(svg("line", { class: "zero", x1: x(0), x2: x(0), y1: 0, y2: H - PAD }));
      for (const [v, anchor] of [[bins.lo, "start"], [bins.hi, "end"]]) {
        plot.appendChild(svg("text", { x: x(v), y: H - 2, "text-anchor": anchor })).textContent = fmt(v, 2);
      }
      const share = bins.n[i] ? bins.below[i] / bins.n[i] : 0;
      panel.append(plot, el("figcaption", "", kind + ": n " + bins.n[i] + ", below 0: " +
        (100 * share).toFixed(1) + " %"));
      return panel;
    });
    const title = el("h2", "", "Reference margins per negative kind (" + MARGIN_NAMES[state.type] +
      "; NaPO Fig. 4). Click a bar to filter to it.");
    $("histograms").replaceChildren(title, ...panels);
  }

  function selectRange(lo, hi) {
    $("margin-lo").value = lo.toFixed(4);
    $("margin-hi").value = hi.toFixed(4);
    $("margin-lo").dispatchEvent(new Event("change"));
  }

  window.unpriorView = { page, histograms };
  header();
  controls();
  B.refresh();
})();
