// @ts-check
// The Quality Checker's submit form: the size check before upload, then the upload with progress and cancel
// (upload.js), the server's validation message shown as it was sent. Without this script the form still posts
// (and the server answers with the entry page, or a page with its message).

import { uploader } from "./upload.js";

const form = /** @type {HTMLFormElement | null} */ (document.getElementById("qc-form"));
const fileInput = /** @type {HTMLInputElement} */ (document.getElementById("zipfile"));

if (form) {
  const upload = uploader(form);
  const maxBytes = Number(form.dataset.maxBytes);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = fileInput.files && fileInput.files[0];
    if (!file) return upload.say("Choose the zip to submit.", true);
    if (file.size > maxBytes) {
      return upload.say(`The file '${file.name}' is larger than the limit of ${form.dataset.maxSize}.`, true);
    }
    upload.send("Uploading…", "Submitted. Opening the entry…");
  });
}
