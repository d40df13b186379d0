// ExoClaw dashboard, a run's page: follows the run live over Server-Sent Events.
// The page marks itself live with <section id="run" data-events="URL"> while the run is queued
// or running. Status events update #run-status (and the attempt and error); output events are
// appended to #run-output; when the run ends the page is fetched again and the parts marked
// data-refresh (times, error, artifacts, the cancel button) are swapped in: no reload.
"use strict";

(() => {
  const run = document.getElementById("run");
  if (!run || !run.dataset.events) return;
  const output = document.getElementById("run-output");

  const source = new EventSource(run.dataset.events);

  // The stream starts with the run as it is, and the output of the current attempt so far.
  source.addEventListener("open", () => {
    output.textContent = "";
  });

  source.addEventListener("status", (event) => {
    const change = JSON.parse(event.data);
    const status = document.getElementById("run-status");
    status.textContent = change.status;
    status.className = "status " + change.status;
    const attempt = document.getElementById("run-attempt");
    if (attempt) attempt.textContent = String(change.attempt);
    if (change.status === "running") {
      // A new attempt starts its output afresh.
      output.textContent = "";
      const started = document.getElementById("run-started");
      if (started && started.dataset.unset !== undefined) {
        started.textContent = utcLabel(change.at_ms);
        delete started.dataset.unset;
      }
    }
    const problem = document.getElementById("run-error");
    if (problem && change.error) {
      problem.textContent = `${change.error.message} (${change.error.code})`;
      problem.hidden = false;
    }
  });

  source.addEventListener("output", (event) => {
    output.textContent += JSON.parse(event.data).delta;
  });

  source.addEventListener("done", () => {
    source.close();
    refresh();
  });

  // As the server writes times: "2026-12-02 09:30 UTC".
  function utcLabel(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  // The page as the server renders it now: its refreshable parts replace ours, and the stored
  // output replaces the streamed one (the same text, unless the stream skipped some).
  async function refresh() {
    try {
      const response = await fetch(window.location.href, { cache: "no-store" });
      if (!response.ok) throw new Error(`the run's page answered ${response.status}`);
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-refresh]").forEach((part) => {
        const fresh = page.getElementById(part.id);
        if (fresh) part.replaceWith(document.importNode(fresh, true));
      });
      const stored = page.getElementById("run-output");
      if (stored && stored.textContent) output.textContent = stored.textContent;
      delete run.dataset.events;
    } catch (_) {
      window.location.reload();
    }
  }
})();
