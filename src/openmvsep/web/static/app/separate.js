// @ts-check
// The Separate form: drag-and-drop, the size check before upload, the upload with progress and cancel, and the
// algorithm search. Without this script the form still posts (and the server answers with a page).

const form = /** @type {HTMLFormElement} */ (document.getElementById("separate-form"));
const fileInput = /** @type {HTMLInputElement} */ (document.getElementById("audiofile"));
const zone = /** @type {HTMLElement} */ (document.getElementById("drop-zone"));
const info = /** @type {HTMLElement} */ (document.getElementById("file-info"));
const statusLine = /** @type {HTMLElement} */ (document.getElementById("form-status"));
const uploadBox = /** @type {HTMLElement} */ (document.getElementById("upload"));
const bar = /** @type {HTMLProgressElement} */ (document.getElementById("upload-progress"));
const percent = /** @type {HTMLElement} */ (document.getElementById("upload-percent"));
const submit = /** @type {HTMLButtonElement} */ (document.getElementById("submit"));
const cancel = /** @type {HTMLButtonElement} */ (document.getElementById("cancel-upload"));
const search = /** @type {HTMLInputElement} */ (document.getElementById("algorithm-search"));
const picker = /** @type {HTMLSelectElement} */ (document.getElementById("sep_type"));

const maxBytes = Number(form.dataset.maxBytes);

/** @param {number} n */
function megabytes(n) {
  return (n / (1024 * 1024)).toFixed(2) + " MB";
}

/** @param {string} text @param {boolean} [isError] */
function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

/** What the browser can tell before any byte is sent: a problem, or null. @param {File} file */
function problemWith(file) {
  if (file.size === 0) return `The file '${file.name}' is empty.`;
  if (file.size > maxBytes) return `The file '${file.name}' is ${megabytes(file.size)}; the limit is ${form.dataset.maxSize}.`;
  if (file.type && !/^(audio|video)\//.test(file.type)) return `The file '${file.name}' does not look like audio (${file.type}).`;
  return null;
}

function showFile() {
  const file = fileInput.files && fileInput.files[0];
  zone.dataset.state = file ? "chosen" : "empty";
  info.textContent = file ? `${file.name}, ${megabytes(file.size)}` : "";
  const problem = file && problemWith(file);
  say(problem || "", Boolean(problem));
}

fileInput.addEventListener("change", showFile);
for (const name of ["dragenter", "dragover"]) {
  zone.addEventListener(name, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
}
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  const files = event.dataTransfer && event.dataTransfer.files;
  if (!files || files.length === 0) return;
  const chosen = new DataTransfer();
  chosen.items.add(files[0]);
  fileInput.files = chosen.files;
  showFile();
});

/** @type {XMLHttpRequest | null} */
let request = null;

function idle() {
  request = null;
  uploadBox.hidden = true;
  cancel.hidden = true;
  submit.disabled = false;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const file = fileInput.files && fileInput.files[0];
  const stored = form.querySelector("input[name=from_hash]"); // a stored file: nothing to upload
  const link = /** @type {HTMLInputElement | null} */ (document.getElementById("url"));
  const url = link && !link.disabled ? link.value.trim() : "";
  if (!file && !stored && !url) return say("Choose an audio file to separate, or give a link.", true);
  const problem = file && !stored && !url ? problemWith(file) : null;
  if (problem) return say(problem, true);
  const xhr = new XMLHttpRequest();
  request = xhr;
  xhr.open("POST", form.action);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf || "");
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    const p = Math.round((100 * e.loaded) / e.total);
    bar.value = p;
    percent.textContent = `${p}%`;
  });
  xhr.addEventListener("load", () => {
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch (_) {
      body = null;
    }
    if (xhr.status === 200 && body && body.success) {
      say(url && !file ? "Sent. Opening the download…" : "Uploaded. Opening the job…");
      window.location.assign(body.data.link);
      return;
    }
    idle();
    const message = body && body.data && body.data.message;
    say(message || `The server answered ${xhr.status}.`, true);
  });
  xhr.addEventListener("error", () => {
    idle();
    say("The upload failed: the connection to the server was lost.", true);
  });
  xhr.addEventListener("abort", () => {
    idle();
    say("Upload cancelled.");
  });
  bar.value = 0;
  percent.textContent = "0%";
  uploadBox.hidden = false;
  cancel.hidden = false;
  submit.disabled = true;
  say("Uploading…");
  xhr.send(new FormData(form));
});

cancel.addEventListener("click", () => {
  if (request) request.abort();
});

// Search: hide the algorithms (and whole groups) whose name does not match.
search.addEventListener("input", () => {
  const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
  for (const group of Array.from(picker.querySelectorAll("optgroup"))) {
    let shown = 0;
    for (const option of Array.from(group.querySelectorAll("option"))) {
      const text = option.dataset.search || "";
      const match = words.every((w) => text.includes(w));
      option.hidden = !match;
      if (match) shown += 1;
    }
    group.hidden = shown === 0;
  }
});
