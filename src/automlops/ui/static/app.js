// The dashboard's only script: local times, timeline widths, live updates, and the upload
// form's header reading. No library, nothing fetched from elsewhere; text only ever goes into
// the page through textContent or nodes parsed from our own server-rendered (escaped) HTML.
"use strict";

(function () {
  const POLL_MS = 2000;

  // -- times in the viewer's zone ----------------------------------------------------------
  const formatter = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "medium",
  });

  function localTimes(root) {
    root.querySelectorAll("time.local[datetime]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (!Number.isNaN(when.getTime())) {
        el.textContent = formatter.format(when);
        el.title = el.getAttribute("datetime");
      }
    });
  }

  // -- bar widths (CSP forbids inline styles in markup; script may set them) ----------------
  function bars(root) {
    root.querySelectorAll(".timeline .seg[data-share]").forEach((el) => {
      const share = parseFloat(el.dataset.share);
      el.style.flexGrow = Number.isFinite(share) ? String(Math.max(share, 0.02)) : "0.25";
    });
    root.querySelectorAll(".bar[data-share]").forEach((el) => {
      const share = parseFloat(el.dataset.share);
      el.style.width = Number.isFinite(share) ? `${Math.min(share, 1) * 8}em` : "0";
    });
  }

  function enhance(root) {
    localTimes(root);
    bars(root);
  }

  // -- live updates ----------------------------------------------------------------------------
  // Poll a small JSON fingerprint; when it changes, fetch this page again and swap the
  // regions marked data-live, so a run's stages light up without a reload.
  function startLive() {
    const body = document.body;
    if (body.dataset.live !== "1") return;
    const status = document.getElementById("live-status");
    let fingerprint = body.dataset.fingerprint;
    let busy = false;

    function say(text) {
      if (status) status.textContent = text;
    }

    async function refresh() {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`page answered ${response.status}`);
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      doc.querySelectorAll("[data-live][id]").forEach((fresh) => {
        const current = document.getElementById(fresh.id);
        if (!current || current.innerHTML === fresh.innerHTML) return;
        // Keep keyboard focus where it was when the focused control survives the swap.
        const focusedName = current.contains(document.activeElement)
          ? document.activeElement.getAttribute("aria-label") || document.activeElement.textContent
          : null;
        // Disclosures the reader opened stay open.
        const opened = Array.from(current.querySelectorAll("details[open][id]")).map((d) => d.id);
        current.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.adoptNode(n)));
        opened.forEach((id) => {
          const again = document.getElementById(id);
          if (again) again.open = true;
        });
        enhance(current);
        if (focusedName) {
          const again = Array.from(current.querySelectorAll("a, button")).find(
            (el) => (el.getAttribute("aria-label") || el.textContent) === focusedName
          );
          if (again) again.focus();
        }
      });
      const count = doc.querySelector("nav .count");
      const mine = document.querySelector("nav .count");
      if (mine && !count) mine.remove();
      else if (count && mine) mine.textContent = count.textContent;
      else if (count && !mine) document.querySelector("nav a[href$='/dlq']")?.append(" ", count);
    }

    async function poll() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const response = await fetch(body.dataset.stateUrl, {
          credentials: "same-origin",
          cache: "no-store",
        });
        if (!response.ok) throw new Error(`state answered ${response.status}`);
        const state = await response.json();
        if (state.fingerprint !== fingerprint) {
          await refresh();
          fingerprint = state.fingerprint;
          body.dataset.fingerprint = fingerprint;
          say(`Live: updated ${formatter.format(new Date())}`);
        }
      } catch (err) {
        say(`Live updates paused (${err.message}); retrying…`);
      } finally {
        busy = false;
      }
    }

    window.setInterval(poll, POLL_MS);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) poll();
    });
  }

  // -- upload form -----------------------------------------------------------------------------
  const TARGET_NAMES = ["y", "target", "label", "class"];

  // The first line of a CSV, split on its most frequent delimiter outside quotes.
  function parseHeader(text) {
    const firstLine = text.replace(/^\uFEFF/, "").split(/\r?\n/, 1)[0] || "";
    const counts = { ",": 0, ";": 0, "\t": 0, "|": 0 };
    let quoted = false;
    for (const ch of firstLine) {
      if (ch === '"') quoted = !quoted;
      else if (!quoted && ch in counts) counts[ch] += 1;
    }
    const delimiter = Object.keys(counts).reduce((a, b) => (counts[b] > counts[a] ? b : a), ",");
    const fields = [];
    let field = "";
    quoted = false;
    for (let i = 0; i < firstLine.length; i += 1) {
      const ch = firstLine[i];
      if (quoted) {
        if (ch === '"' && firstLine[i + 1] === '"') {
          field += '"';
          i += 1;
        } else if (ch === '"') quoted = false;
        else field += ch;
      } else if (ch === '"') quoted = true;
      else if (ch === delimiter) {
        fields.push(field.trim());
        field = "";
      } else field += ch;
    }
    fields.push(field.trim());
    return fields.filter((f) => f.length > 0);
  }

  function guessTarget(columns) {
    return columns.find((c) => TARGET_NAMES.includes(c.toLowerCase())) || columns[columns.length - 1];
  }

  function option(value, label) {
    const el = document.createElement("option");
    el.value = value;
    el.textContent = label;
    return el;
  }

  function setupUpload() {
    const form = document.getElementById("upload-form");
    if (!form) return;
    const file = document.getElementById("file");
    const dataset = document.getElementById("dataset");
    const target = document.getElementById("target");
    const choices = document.getElementById("drop-choices");
    const manifestsEl = document.getElementById("manifests");
    const manifests = manifestsEl ? JSON.parse(manifestsEl.textContent || "{}") : {};
    let datasetTyped = dataset.value !== "";
    let columns = [];

    dataset.addEventListener("input", () => {
      datasetTyped = dataset.value !== "";
      applyManifest();
    });

    function stored() {
      return Object.prototype.hasOwnProperty.call(manifests, dataset.value)
        ? manifests[dataset.value]
        : null;
    }

    function fillColumns() {
      const keep = target.value;
      target.replaceChildren(option("", "Detect (y / target / label / class, else the last column)"));
      columns.forEach((c) => target.append(option(c, c)));
      const manifest = stored();
      const wanted = (manifest && manifest.target) || keep || (columns.length ? guessTarget(columns) : "");
      if (columns.includes(wanted)) target.value = wanted;
      choices.replaceChildren();
      columns.forEach((c, i) => {
        const label = document.createElement("label");
        label.className = "choice";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.name = "drop";
        box.value = c;
        box.id = `drop-${i}`;
        box.checked = Boolean(manifest && manifest.drop && manifest.drop.includes(c));
        label.append(box, ` ${c}`);
        choices.append(label);
      });
    }

    function applyManifest() {
      const manifest = stored();
      if (!manifest) return;
      if (manifest.task) form.elements.task.value = manifest.task;
      if (manifest.positive) form.elements.positive.value = manifest.positive;
      if (manifest.time_budget_s) form.elements.time_budget.value = manifest.time_budget_s;
      if (Array.isArray(manifest.learners)) {
        form.querySelectorAll("input[name=learners]").forEach((box) => {
          box.checked = manifest.learners.includes(box.value);
        });
      }
      if (columns.length) fillColumns();
    }

    file.addEventListener("change", async () => {
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      if (!datasetTyped) {
        const stem = chosen.name.replace(/\.csv$/i, "").replace(/[^A-Za-z0-9_.-]+/g, "-");
        dataset.value = stem.replace(/^[-.]+|[-.]+$/g, "") || "dataset";
        applyManifest();
      }
      const head = await chosen.slice(0, 65536).text();
      columns = parseHeader(head);
      fillColumns();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    enhance(document);
    startLive();
    setupUpload();
  });
})();
