// ExoClaw dashboard: small behaviours on top of server-rendered pages, no framework.
// Loaded with `defer` from this origin only (the Content-Security-Policy allows nothing inline).
"use strict";

// <button data-copy="ID">: copies the text of element ID.
document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: copy it";
    }
  });
});

// <form data-confirm="Question?">: asks before posting.
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});
