// @ts-check
// The Matchering form: both files chosen and within the size limit together before upload, then the upload with
// progress and cancel (upload.js). Without this script the form still posts (and the server answers with a page).

import { uploader } from "./upload.js";

const form = /** @type {HTMLFormElement} */ (document.getElementById("matchering-form"));
const inputs = ["target_audiofile", "reference_audiofile"].map(
  (id) => /** @type {HTMLInputElement} */ (document.getElementById(id)),
);
const upload = uploader(form);
const maxBytes = Number(form.dataset.maxBytes);

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const files = inputs.map((input) => input.files && input.files[0]);
  if (files.some((file) => !file)) return upload.say("Choose both files: the target and the reference.", true);
  const total = files.reduce((sum, file) => sum + (file ? file.size : 0), 0);
  if (total > maxBytes) return upload.say(`The two files are larger together than the limit of ${form.dataset.maxSize}.`, true);
  upload.send("Uploading…", "Uploaded. Opening the job…");
});
