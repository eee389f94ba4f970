// The project page's agreement section (templates/_agreement.html): an admin adjudicates a window the analysts
// disagree on; the section is then redrawn from the page. Delegated on the document, so it keeps working when the
// page's live refresh replaces the section.
import { postJSON } from "./js/api.js";
import { toast } from "./js/toast.js";

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("button.adjudicate");
  if (!button) return;
  button.disabled = true;
  try {
    await postJSON(`/api/v1/queries/${button.dataset.query}/adjudicate`, { value: button.dataset.value });
    const page = await fetch(location.pathname, { credentials: "same-origin" });
    const fresh = new DOMParser().parseFromString(await page.text(), "text/html").getElementById("agreement");
    const here = document.getElementById("agreement");
    if (fresh && here) here.replaceWith(fresh);
    toast(`Window adjudicated: ${button.dataset.value}`);
  } catch (e) {
    button.disabled = false;
    toast(`Not adjudicated: ${e.message}`, 6000);
  }
});
