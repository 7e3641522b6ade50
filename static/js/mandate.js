// Small progressive enhancements; no inline scripts (CSP forbids them).
document.addEventListener("htmx:beforeSwap", (event) => {
  // 422 fragments carry field errors: swap them in like a success.
  if (event.detail.xhr.status === 422) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
