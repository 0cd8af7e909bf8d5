// JSON calls to /api/... with the session's CSRF token, shared by every page's script.
//   api(method, url, body)          -> the parsed JSON (null for 204), or throws Error(server's message)
//   api.request(method, url, body)  -> the raw Response (for SVG, CSV, blobs)
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function request(method, url, body) {
    return fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async function api(method, url, body) {
    const res = await request(method, url, body);
    if (res.status === 204) return null;
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.error || res.statusText);
    return data;
  }

  api.request = request;
  api.csrf = csrf;
  window.api = api;
})();
