// JSON calls to /api/... with the session's CSRF token, shared by every page's script.
//   api(method, url, body)          -> the parsed JSON (null for 204), or throws Error(server's message);
//                                      body is sent as JSON, or as is when it is a FormData (files)
//   api.request(method, url, body)  -> the raw Response (for SVG, CSV, blobs)
//   api.upload(file)                -> the stored image {id, url}
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function request(method, url, body) {
    const form = body instanceof FormData;   // the browser sets its multipart Content-Type
    const headers = { Accept: "application/json", "X-CSRFToken": csrf() };
    if (!form) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method, credentials: "same-origin", headers,
      body: body === undefined || form ? body : JSON.stringify(body),
    });
  }

  async function parsed(res) {
    if (res.status === 204) return null;
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.error || res.statusText);
    return data;
  }

  async function api(method, url, body) {
    return parsed(await request(method, url, body));
  }

  // Stores an image file (POST /api/media) -> {id, url}: send the id as a campaign's or step's media_id.
  async function upload(file) {
    const form = new FormData();
    form.append("image", file);
    return api("POST", "/api/media", form);
  }

  api.request = request;
  api.upload = upload;
  api.csrf = csrf;
  window.api = api;
})();
