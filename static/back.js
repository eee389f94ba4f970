// "Go back" links (data-back): the browser's back when there is a page to go back to, else the link's own href.
// A script file, not a javascript: URL, so the page passes a Content-Security-Policy of script-src 'self'.
(function () {
  "use strict";
  for (const link of document.querySelectorAll("a[data-back]")) {
    link.addEventListener("click", (ev) => {
      if (history.length > 1) { ev.preventDefault(); history.back(); }
    });
  }
})();
