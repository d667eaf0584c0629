/* unprior pairs browser: the state, the filters and the data loading.
 *
 * data/index.js (window.UNPRIOR_BROWSE_INDEX) holds, per row, its number of negatives and, per negative, its kind
 * and reference margins: filtering, sorting and the histograms need nothing else. The full rows live in
 * data/chunk-NNNNN.js files, each calling unpriorBrowseChunk(k, rows); they are loaded with <script> tags (which
 * work from file://, unlike fetch) only for the rows of the current page, or one after another for a search.
 * view.js draws the page from what this file computes. Every text from the data goes into the page as text
 * (textContent), never as HTML. */
"use strict";

(function () {
  const INDEX = window.UNPRIOR_BROWSE_INDEX;
  const $ = (id) => document.getElementById(id);
  const CACHED_CHUNKS = 48;
  const SEARCH_PARALLEL = 4;

  function fail(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = false;
    document.body.dataset.state = "error";
  }

  if (!INDEX) {
    fail("data/index.js did not load: open the index.html of a folder written by unprior pairs browse.");
    return;
  }

  // ------------------------------------------------------------------------------------------- the index

  const nRows = INDEX.rows;
  const first = new Int32Array(nRows + 1); // the negatives of row r are first[r] .. first[r + 1] - 1
  for (let r = 0; r < nRows; r++) first[r + 1] = first[r] + INDEX.neg_count[r];
  const kindOf = Uint8Array.from(INDEX.neg_kind, (c) => c.charCodeAt(0) - 48);

  function floats(values) {
    const out = new Float64Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = values[i] === null ? NaN : values[i];
    return out;
  }

  const margins = Array.isArray(INDEX.margin_sum)
    ? { sum: floats(INDEX.margin_sum), mean: floats(INDEX.margin_mean) } : null;

  const state = {
    kinds: new Set(INDEX.kinds.map((_, i) => i)),
    type: "sum",
    lo: -Infinity,
    hi: Infinity,
    sort: "file",
    query: "",
    page: 0,
    pageSize: INDEX.page_size,
  };
  let searchHits = null; // Uint8Array over rows for state.query, or null when there is no query
  let visible = new Int32Array(0); // the rows that pass every filter, in display order
  let matchedNegatives = 0;

  function rangeActive() {
    return margins !== null && (state.lo > -Infinity || state.hi < Infinity);
  }

  /** Whether negative j passes the kind and margin filters (a negative without a margin fails a margin range). */
  function negativeMatches(j) {
    if (!state.kinds.has(kindOf[j])) return false;
    if (!rangeActive()) return true;
    const m = margins[state.type][j];
    return m >= state.lo && m <= state.hi;
  }

  /** A row is shown when one of its negatives passes and the search (if any) found it. Sort key: the lowest
   *  (or highest) margin among its matching negatives; rows without one go last, ties in file order. */
  function computeVisible() {
    const rows = [];
    const keys = [];
    const desc = state.sort === "desc";
    matchedNegatives = 0;
    for (let r = 0; r < nRows; r++) {
      if (searchHits !== null && !searchHits[r]) continue;
      let key = NaN;
      let any = false;
      for (let j = first[r]; j < first[r + 1]; j++) {
        if (!negativeMatches(j)) continue;
        any = true;
        matchedNegatives++;
        const m = margins === null ? NaN : margins[state.type][j];
        if (!Number.isNaN(m)) key = Number.isNaN(key) ? m : (desc ? Math.max(key, m) : Math.min(key, m));
      }
      if (any) {
        rows.push(r);
        keys.push(key);
      }
    }
    const order = rows.map((_, i) => i);
    if (state.sort !== "file" && margins !== null) {
      order.sort((a, b) => {
        const ka = keys[a];
        const kb = keys[b];
        if (Number.isNaN(ka) || Number.isNaN(kb)) return Number.isNaN(ka) - Number.isNaN(kb) || a - b;
        return (desc ? kb - ka : ka - kb) || a - b;
      });
    }
    visible = Int32Array.from(order, (i) => rows[i]);
  }

  // ------------------------------------------------------------------------------------------- the chunks

  const cache = new Map(); // chunk -> rows, in least-recently-used order
  const waiting = new Map(); // chunk -> {promise, resolve, reject}

  function remember(k, rows) {
    cache.delete(k);
    cache.set(k, rows);
    while (cache.size > CACHED_CHUNKS) cache.delete(cache.keys().next().value);
  }

  window.unpriorBrowseChunk = function (k, rows) {
    remember(k, rows);
    const w = waiting.get(k);
    if (w) {
      waiting.delete(k);
      w.resolve(rows);
    }
  };

  function chunkName(k) {
    return "data/chunk-" + String(k).padStart(5, "0") + ".js";
  }

  function loadChunk(k) {
    if (cache.has(k)) {
      const rows = cache.get(k);
      remember(k, rows);
      return Promise.resolve(rows);
    }
    if (waiting.has(k)) return waiting.get(k).promise;
    const entry = {};
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    waiting.set(k, entry);
    const script = document.createElement("script");
    script.src = chunkName(k);
    const gone = (why) => () => {
      script.remove();
      if (waiting.get(k) === entry) {
        waiting.delete(k);
        entry.reject(new Error(why + " " + chunkName(k)));
      }
    };
    script.onload = gone("no rows in"); // a chunk resolves before its onload; reaching this means it did not
    script.onerror = gone("cannot load");
    document.head.appendChild(script);
    return entry.promise;
  }

  /** The full records of the given rows (chunk-local lookups), in the same order. */
  async function records(rows) {
    const size = INDEX.chunk_size;
    const needed = [...new Set(Array.from(rows, (r) => Math.floor(r / size)))];
    const loaded = await Promise.all(needed.map(loadChunk));
    const byChunk = new Map(needed.map((k, i) => [k, loaded[i]]));
    return Array.from(rows, (r) => byChunk.get(Math.floor(r / size))[r % size]);
  }

  // ------------------------------------------------------------------------------------------- search

  function haystack(rec) {
    return [rec.id, rec.prompt, rec.chosen, ...rec.negatives.map((n) => n.text)].join("\n").toLowerCase();
  }

  /** Scan every chunk for the query; false when a newer query replaced it meanwhile. */
  async function search(query) {
    const needle = query.trim().toLowerCase();
    if (!needle) {
      searchHits = null;
      return true;
    }
    const hits = new Uint8Array(nRows);
    for (let k = 0; k < INDEX.chunks; k += SEARCH_PARALLEL) {
      const batch = [];
      for (let c = k; c < Math.min(k + SEARCH_PARALLEL, INDEX.chunks); c++) batch.push(loadChunk(c));
      const loaded = await Promise.all(batch);
      if (state.query !== query) return false;
      for (const rows of loaded) for (const rec of rows) if (haystack(rec).includes(needle)) hits[rec.row] = 1;
      $("status").textContent = "searching… " + Math.min(k + SEARCH_PARALLEL, INDEX.chunks) + " / " +
        INDEX.chunks + " chunks";
    }
    searchHits = hits;
    return true;
  }

  // ------------------------------------------------------------------------------------------- refresh

  let renderToken = 0;
  let renders = 0; // completed draws, in body[data-renders] (tests wait for it to change)

  /** Recompute the visible rows (unless only the page changed) and draw the current page. */
  async function refresh(recompute = true) {
    const token = ++renderToken;
    document.body.dataset.state = "loading";
    if (recompute) computeVisible();
    const pages = Math.max(1, Math.ceil(visible.length / state.pageSize));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    const start = state.page * state.pageSize;
    const rows = visible.subarray(start, start + state.pageSize);
    let recs;
    try {
      recs = await records(rows);
    } catch (e) {
      fail(e.message);
      return;
    }
    if (token !== renderToken) return;
    window.unpriorView.page(recs, { state, pages, shown: visible.length, matchedNegatives, negativeMatches, first });
    window.unpriorView.histograms({ state, margins, kindOf });
    document.body.dataset.renders = String(++renders);
    document.body.dataset.state = "ready";
  }

  async function setQuery(query) {
    state.query = query;
    state.page = 0;
    document.body.dataset.state = "loading";
    let done;
    try {
      done = await search(query);
    } catch (e) {
      fail(e.message);
      return;
    }
    if (done) await refresh();
  }

  window.unpriorBrowse = {
    INDEX, state, margins, kindOf, first, refresh, setQuery, fail,
    visibleRows: () => Array.from(visible),
  };
})();
