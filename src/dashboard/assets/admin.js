// ExoClaw operators' pages: tables that keep themselves current, on top of server-rendered
// pages, no framework. Loaded with `defer` from this origin only (the Content-Security-Policy
// allows nothing inline). The server renders the first rows (src/admin/pages/live.rs).
"use strict";

// A value as a cell shows it, and the cell's state class. Mirrors `cell` in
// src/admin/pages/live.rs: keep the two in step.
function cell(format, value) {
  if (value === null || value === undefined || value === "") return ["—", ""];
  if (format === "updown" && typeof value === "boolean") {
    return value ? ["up", "up"] : ["down", "down"];
  }
  if (format === "whole" && typeof value === "number") return [String(Math.round(value)), ""];
  return [String(value), ""];
}

// <table class="live" data-source="URL" data-list="KEY" data-key="FIELD" data-where="F=V"
//        data-every="MS" data-empty="TEXT">, each <th data-field data-format>: every MS the
// rows are built again from the items at KEY in the JSON at URL, as text (never as HTML).
function keepCurrent(table) {
  const columns = Array.from(table.tHead.rows[0].cells).map((th) => ({
    field: th.dataset.field,
    format: th.dataset.format,
  }));
  const status = document.getElementById(table.id + "-status");
  const [onlyField, onlyValue] = (table.dataset.where || "").split("=");
  const shown = (item) => !onlyField || String(item[onlyField]) === onlyValue;

  function render(items) {
    const body = document.createElement("tbody");
    items.filter(shown).forEach((item) => {
      const row = body.insertRow();
      row.dataset.row = cell("text", item[table.dataset.key])[0];
      columns.forEach((column) => {
        const [text, state] = cell(column.format, item[column.field]);
        const td = row.insertCell();
        td.className = "f-" + column.field + (state ? " " + state : "");
        td.textContent = text;
      });
    });
    if (body.rows.length === 0) {
      const row = body.insertRow();
      row.className = "empty";
      const td = row.insertCell();
      td.colSpan = columns.length;
      td.textContent = table.dataset.empty;
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(table.dataset.source, {
        credentials: "same-origin",
        redirect: "manual",
        cache: "no-store",
        headers: { accept: "application/json" },
      });
      if (response.type === "opaqueredirect" || response.status === 401) {
        // The session ended (signed out elsewhere, expired, a restart): sign in again.
        window.location.assign("/signin");
        return;
      }
      if (!response.ok) throw new Error("the gateway answered " + response.status);
      const data = await response.json();
      render(data[table.dataset.list] || []);
      if (status) {
        status.textContent = "Updated at " + new Date().toLocaleTimeString();
        status.classList.remove("error");
      }
    } catch (error) {
      if (status) {
        status.textContent = "Could not refresh (" + error.message + "); trying again.";
        status.classList.add("error");
      }
    }
  }

  window.setInterval(refresh, Number(table.dataset.every) || 3000);
}

document.querySelectorAll("table.live[data-source]").forEach(keepCurrent);

// Over plain HTTP to a host that is not this machine, browsers drop the Secure session cookie:
// the sign-in page says so instead of signing in for nothing.
const insecure = document.getElementById("insecure-context");
if (insecure && !window.isSecureContext) insecure.hidden = false;
