// @ts-check
// The Separate form: drag-and-drop, the size check before upload, the upload with progress and cancel
// (upload.js), and the algorithm search. Without this script the form still posts (and the server answers with a
// page).

import { uploader } from "./upload.js";

const form = /** @type {HTMLFormElement} */ (document.getElementById("separate-form"));
const fileInput = /** @type {HTMLInputElement} */ (document.getElementById("audiofile"));
const zone = /** @type {HTMLElement} */ (document.getElementById("drop-zone"));
const info = /** @type {HTMLElement} */ (document.getElementById("file-info"));
const search = /** @type {HTMLInputElement} */ (document.getElementById("algorithm-search"));
const picker = /** @type {HTMLSelectElement} */ (document.getElementById("sep_type"));

const maxBytes = Number(form.dataset.maxBytes);

/** @param {number} n */
function megabytes(n) {
  return (n / (1024 * 1024)).toFixed(2) + " MB";
}

const upload = uploader(form);
const say = upload.say;

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

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const file = fileInput.files && fileInput.files[0];
  const stored = form.querySelector("input[name=from_hash]"); // a stored file: nothing to upload
  const link = /** @type {HTMLInputElement | null} */ (document.getElementById("url"));
  const url = link && !link.disabled ? link.value.trim() : "";
  if (!file && !stored && !url) return say("Choose an audio file to separate, or give a link.", true);
  const problem = file && !stored && !url ? problemWith(file) : null;
  if (problem) return say(problem, true);
  upload.send("Uploading…", url && !file ? "Sent. Opening the download…" : "Uploaded. Opening the job…");
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
