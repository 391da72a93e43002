// @ts-check
// The Quality Checker's submit form: the size check before upload, the upload with progress and cancel, and the
// server's validation message shown as it was sent. Without this script the form still posts (and the server
// answers with the entry page, or a page with its message).

const form = /** @type {HTMLFormElement} */ (document.getElementById("qc-form"));
const fileInput = /** @type {HTMLInputElement} */ (document.getElementById("zipfile"));
const statusLine = /** @type {HTMLElement} */ (document.getElementById("form-status"));
const uploadBox = /** @type {HTMLElement} */ (document.getElementById("upload"));
const bar = /** @type {HTMLProgressElement} */ (document.getElementById("upload-progress"));
const percent = /** @type {HTMLElement} */ (document.getElementById("upload-percent"));
const submit = /** @type {HTMLButtonElement} */ (document.getElementById("submit"));
const cancel = /** @type {HTMLButtonElement} */ (document.getElementById("cancel-upload"));

/** @param {string} text @param {boolean} [isError] */
function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

/** @type {XMLHttpRequest | null} */
let request = null;

function idle() {
  request = null;
  uploadBox.hidden = true;
  cancel.hidden = true;
  submit.disabled = false;
}

if (form) {
  const maxBytes = Number(form.dataset.maxBytes);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = fileInput.files && fileInput.files[0];
    if (!file) return say("Choose the zip to submit.", true);
    if (file.size > maxBytes) return say(`The file '${file.name}' is larger than the limit of ${form.dataset.maxSize}.`, true);
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
        say("Submitted. Opening the entry…");
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
}
