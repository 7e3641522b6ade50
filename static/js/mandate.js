// Small progressive enhancements; no inline scripts (CSP forbids them).
document.addEventListener("htmx:beforeSwap", (event) => {
  // 422 fragments carry field errors: swap them in like a success.
  if (event.detail.xhr.status === 422) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// Any other failed htmx request says so above the page instead of doing nothing: the
// click did not take effect, and the reviewer must know.
const REQUEST_ERRORS = {
  403: "Not done: you are not allowed to do this, or the page's security token expired. Reload the page and try again.",
  404: "Not done: what this acted on no longer exists. Reload the page.",
  409: "Not done: someone changed this at the same time. Reload the page to see the current state.",
  413: "Not done: what you sent is too large.",
  429: "Not done: too many requests in a short time. Wait a moment and try again.",
};

function showRequestError(text) {
  const banner = document.getElementById("request-error");
  if (!banner) return;
  banner.textContent = text;
  banner.hidden = false;
}

document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr.status;
  showRequestError(
    REQUEST_ERRORS[status] ||
      `Not done: the server could not complete this request (${status}). Try again; if it keeps failing, tell your administrator.`,
  );
});

document.addEventListener("htmx:sendError", () => {
  showRequestError("Not done: the server could not be reached. Check your connection and try again.");
});

document.addEventListener("htmx:afterRequest", (event) => {
  const banner = document.getElementById("request-error");
  if (banner && event.detail.successful) banner.hidden = true;
});

// A form's buttons are disabled while its request is in flight, so a double click sends one
// request, not two (htmx queues the second click's request and sends it after the first).
// When the answer moves the page on (HX-Redirect and the like), they stay disabled: the
// page is going away, and a click meanwhile would act a second time.
const MOVES_ON = ["HX-Redirect", "HX-Location", "HX-Refresh"];

// The buttons a request from `elt` stands for: a form's submit buttons, or a button that
// asks by itself (hx-post on the button).
function requestButtons(elt) {
  if (elt instanceof HTMLFormElement) {
    return [...elt.querySelectorAll("button, input[type=submit]")].filter(
      (button) => button.type === "submit",
    );
  }
  return elt instanceof HTMLButtonElement ? [elt] : [];
}

document.addEventListener("htmx:beforeRequest", (event) => {
  for (const button of requestButtons(event.detail.elt)) {
    if (button.disabled) continue;
    button.disabled = true;
    button.dataset.inFlight = "";
  }
});

document.addEventListener("htmx:afterRequest", (event) => {
  const xhr = event.detail.xhr;
  // (htmx leaves `successful` unset on an answer that moves the page on.)
  if (xhr && MOVES_ON.some((name) => xhr.getResponseHeader(name))) return;
  for (const button of requestButtons(event.detail.elt)) {
    if (!("inFlight" in button.dataset)) continue;
    button.disabled = false;
    delete button.dataset.inFlight;
  }
});

// "Select all" for a list of checkboxes: a box with data-select-all="ids" ticks or clears
// every enabled box named ids in its form, and shows whether all, some or none are ticked.
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || box.type !== "checkbox" || !box.form) return;
  const name = box.dataset.selectAll || box.name;
  if (!name) return;
  const boxes = [...box.form.querySelectorAll("input[type=checkbox]")].filter(
    (other) => other.name === name && !other.disabled,
  );
  const all = [...box.form.querySelectorAll("input[data-select-all]")].find(
    (other) => other.dataset.selectAll === name,
  );
  if (box === all) {
    for (const other of boxes) other.checked = box.checked;
  } else if (all) {
    const ticked = boxes.filter((other) => other.checked).length;
    all.checked = ticked > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }
});

// A confirmation is asked only of a form that can go through: one missing a required answer
// is sent without it, and the server's field error shows in place (nothing changes), rather
// than asking "Revoke this?" and then refusing for want of a reason.
document.addEventListener("htmx:confirm", (event) => {
  const form = event.detail.elt.closest && event.detail.elt.closest("form");
  if (!event.detail.question || !form) return;
  const missing = [...form.querySelectorAll("[required]")].some(
    (field) => !field.disabled && !String(field.value).trim(),
  );
  if (missing) {
    event.preventDefault();
    event.detail.issueRequest(true);
  }
});

// Times are shown in the browser's time zone: name it to the server in a cookie
// (governance/timezones.py). A new zone takes effect from the next page; until then every
// page says which zone its times are in.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  // IANA names are cookie-safe as they are; the server does not percent-decode cookies.
  if (!zone || !/^[A-Za-z0-9_+\/-]+$/.test(zone)) return;
  if (document.cookie.split("; ").includes(`mandate_tz=${zone}`)) return;
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `mandate_tz=${zone}; path=/; max-age=31536000; SameSite=Lax${secure}`;
})();
