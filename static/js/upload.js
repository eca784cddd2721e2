// Chunked, resumable upload through /api/v1/uploads/ with a progress bar.
// A lost connection is retried with backoff; picking the same file after a reload resumes
// from the bytes the server already has.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const chunkBytes = Number(form.dataset.chunkBytes);
  const maxBytes = Number(form.dataset.maxBytes);
  const uploadsUrl = form.dataset.uploadsUrl;
  const checkUrl = form.dataset.checkUrl;
  const checkLine = document.getElementById("version-check");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const input = document.getElementById("file-input");
  const zone = document.getElementById("drop-zone");
  const bar = document.getElementById("upload-progress");
  const statusLine = document.getElementById("upload-status");
  const button = document.getElementById("upload-button");
  let file = null;

  function choose(f) {
    file = f;
    document.getElementById("file-name").textContent = f ? `${f.name} (${(f.size / 1048576).toFixed(1)} MB)` : "";
  }
  input.addEventListener("change", () => choose(input.files[0] || null));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });

  function say(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }
  function show(done) {
    const percent = file.size ? Math.floor((done / file.size) * 100) : 100;
    bar.value = percent;
    bar.textContent = `${percent} %`;
    return percent;
  }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // One request; resolves to {status, body} for any HTTP answer, rejects on network failure.
  function send(method, url, body, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      Object.entries(headers || {}).forEach(([k, v]) => xhr.setRequestHeader(k, v));
      if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => {
        let parsed = {};
        try { parsed = JSON.parse(xhr.responseText || "{}"); } catch (err) { parsed = { detail: xhr.responseText }; }
        resolve({ status: xhr.status, body: parsed });
      };
      xhr.onerror = () => reject(new Error("network"));
      xhr.ontimeout = () => reject(new Error("timeout"));
      xhr.send(body);
    });
  }
  const json = (method, url, data) => send(method, url, JSON.stringify(data), { "Content-Type": "application/json" });

  // Retries network failures and 5xx answers with backoff; returns the first other answer.
  async function withRetry(what, attempt) {
    for (let tries = 0; ; tries++) {
      let answer = null;
      try {
        answer = await attempt();
        if (answer.status < 500) return answer;
      } catch (err) { /* network down: retry below */ }
      const wait = Math.min(30, 2 ** Math.min(tries, 5));
      const why = answer ? `The server could not take it yet (${answer.body.detail || "HTTP " + answer.status})`
        : "Connection lost";
      say(`${why} while ${what}; retrying in ${wait} s…`, true);
      await Promise.race([sleep(wait * 1000), new Promise((r) => window.addEventListener("online", r, { once: true }))]);
    }
  }

  const resumeKey = (f) => `berth-upload:${f.name}:${f.size}:${f.lastModified}`;

  async function openUpload() {
    const known = localStorage.getItem(resumeKey(file));
    if (known) {
      const answer = await withRetry("checking the earlier upload", () => send("GET", known));
      if (answer.status === 200 && answer.body.status === "open") return answer.body;
      localStorage.removeItem(resumeKey(file));
    }
    const answer = await withRetry("starting", () => json("POST", uploadsUrl, { size: file.size, filename: file.name }));
    if (answer.status >= 400) throw new Error(answer.body.detail || `HTTP ${answer.status}`);
    localStorage.setItem(resumeKey(file), answer.body.url);
    return answer.body;
  }

  async function sendChunks(upload) {
    let offset = upload.offset;
    while (offset < file.size) {
      const end = Math.min(offset + chunkBytes, file.size);
      const start = offset;
      const answer = await withRetry("sending", () => send("PUT", upload.url, file.slice(start, end),
        { "Content-Range": `bytes ${start}-${end - 1}/${file.size}`, "Content-Type": "application/octet-stream" },
        (loaded) => say(`Uploading… ${show(start + loaded)} %`)));
      if (answer.status === 200) {
        offset = answer.body.offset;
      } else if (answer.status === 409 && typeof answer.body.offset === "number") {
        offset = answer.body.offset;  // the server has more or less than we thought: continue from there
      } else {
        throw new Error(answer.body.detail || `HTTP ${answer.status}`);
      }
      say(`Uploading… ${show(offset)} %`);
    }
    return upload;
  }

  function registration() {
    const data = new FormData(form);
    let metadata = {};
    const text = (data.get("metadata") || "").trim();
    if (text) {
      try { metadata = JSON.parse(text); } catch (err) { throw new Error("Metadata is not valid JSON."); }
    }
    return {
      model: data.get("model"),
      version: data.get("version"),
      tags: (data.get("tags") || "").split(",").map((t) => t.trim()).filter(Boolean),
      alias: data.get("alias") || "",
      metadata: metadata,
      create_model: data.get("create_model") === "on",
    };
  }

  // Files up to this size are hashed in the browser before the name check (one read, in memory):
  // the same bytes under a taken name are then fine. Larger ones are checked by name alone.
  const HASH_MAX_BYTES = 256 * 1024 * 1024;
  async function sha256Of(f) {
    if (!f || f.size > HASH_MAX_BYTES || !(window.crypto && crypto.subtle)) return "";
    const digest = await crypto.subtle.digest("SHA-256", await f.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // The pre-flight check: is model:version free? Shown beside the version field.
  async function checkName(sha256) {
    const data = new FormData(form);
    const model = (data.get("model") || "").trim();
    const version = (data.get("version") || "").trim();
    if (!model || !version) { checkLine.textContent = ""; return { ok: true }; }
    const query = new URLSearchParams({ model, version, create_model: data.get("create_model") === "on" });
    if (sha256) query.set("sha256", sha256);
    const answer = await send("GET", `${checkUrl}?${query}`);
    if (answer.status !== 200) return { ok: true };  // the registration decides in the end
    checkLine.textContent = answer.body.message;
    checkLine.className = answer.body.ok ? "helptext" : "error";
    return answer.body;
  }
  ["model", "version"].forEach((name) => form.elements.namedItem(name).addEventListener("change", () => {
    checkName("").catch(() => {});
  }));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file) { say("Choose a file first.", true); return; }
    if (file.size > maxBytes) { say(`The file is larger than the server's limit of ${maxBytes} bytes.`, true); return; }
    button.disabled = true;
    try {
      const fields = registration();
      say("Checking the version name…");
      const verdict = await checkName(await sha256Of(file));
      if (!verdict.ok) throw new Error(verdict.message);
      const upload = await sendChunks(await openUpload());
      say("Upload complete (100 %). Checking the file…");
      show(file.size);
      const answer = await withRetry("registering", () => json("POST", `${upload.url}complete/`, fields));
      if (answer.status >= 400) throw new Error(answer.body.detail || `HTTP ${answer.status}`);
      localStorage.removeItem(resumeKey(file));
      say(answer.status === 201 ? "Registered. Opening the version…" : "This exact version was already registered.");
      window.location.assign(answer.body.page_url);
    } catch (err) {
      say(err.message, true);
    } finally {
      button.disabled = false;
    }
  });
})();
