// Account page: create an API token or webhook secret (shown once) and revoke tokens, through /api/tokens.
(function () {
  "use strict";
  const form = document.getElementById("token-form");
  const error = document.getElementById("token-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    try {
      const made = await api("POST", "/api/tokens", Object.fromEntries(new FormData(form)));
      const shown = document.getElementById("new-token");
      shown.querySelector("code").textContent = made.token;
      shown.hidden = false;
      form.reset();
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  });
  document.getElementById("tokens").addEventListener("click", async (ev) => {
    const id = ev.target.dataset.revoke;
    if (!id || !confirm("Revoke this token? Whatever uses it stops working now.")) return;
    try { await api("DELETE", `/api/tokens/${id}`); ev.target.closest("tr").remove(); }
    catch (e) { error.textContent = e.message; error.hidden = false; }
  });
})();
