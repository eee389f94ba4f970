// One toast at the bottom of the page (role=status, so screen readers read it); a new message replaces the last.
export function toast(text, ms = 2500, doc = globalThis.document) {
  let el = doc.querySelector(".toast");
  if (!el) {
    el = doc.createElement("div");
    el.className = "toast";
    el.setAttribute("role", "status");
    doc.body.appendChild(el);
  }
  el.textContent = text;
  el.classList.add("show");
  clearTimeout(el._t);
  el._t = setTimeout(() => el.classList.remove("show"), ms);
}
