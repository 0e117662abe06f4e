// Copy buttons: <button type="button" data-copy="text">. A click puts the text on the
// clipboard and the button says so for a moment. Loaded as a file: the pages' CSP
// (script-src 'self') refuses inline script. Listens on the document, so buttons that htmx
// swaps in work too.
(function () {
  "use strict";

  function fallbackCopy(text) {
    // navigator.clipboard exists only in secure contexts (https, or http on localhost).
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("copy refused");
  }

  function say(button, text) {
    const label = button.querySelector(".copy-label");
    const status = document.getElementById("copy-status");
    if (status) status.textContent = text;
    if (!label) return;
    label.textContent = text;
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(function () { label.textContent = "Copy"; }, 2000);
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const text = button.dataset.copy;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
      } else {
        fallbackCopy(text);
      }
      say(button, "Copied");
    } catch (error) {
      say(button, "Select the text and copy it");
    }
  });
})();
