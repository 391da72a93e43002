// @ts-check
// Posting a form that carries a file (the Separate page, Matchering's, the Quality Checker's submit form): the
// upload with a progress bar and a cancel button, then the server's answer in MVSep's shape, its message shown as
// it was sent. The page holds the parts by these ids: form-status (role=status), upload (the hidden box),
// upload-progress, upload-percent, submit and cancel-upload; the form carries its CSRF token in data-csrf.

/**
 * @typedef {object} Upload
 * @property {(text: string, isError?: boolean) => void} say  the status line
 * @property {(sending: string, done: string) => void} send  post the form; `sending` and `done` are what the status
 *   line says while the bytes go and once the server accepted them (then the page opens the answer's `link`)
 */

/** @param {string} id */
function part(id) {
  return /** @type {HTMLElement} */ (document.getElementById(id));
}

/**
 * @param {HTMLFormElement} form
 * @returns {Upload}
 */
export function uploader(form) {
  const statusLine = part("form-status");
  const box = part("upload");
  const bar = /** @type {HTMLProgressElement} */ (part("upload-progress"));
  const percent = part("upload-percent");
  const submit = /** @type {HTMLButtonElement} */ (part("submit"));
  const cancel = /** @type {HTMLButtonElement} */ (part("cancel-upload"));
  /** @type {XMLHttpRequest | null} */
  let request = null;

  /** @param {string} text @param {boolean} [isError] */
  function say(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  function idle() {
    request = null;
    box.hidden = true;
    cancel.hidden = true;
    submit.disabled = false;
  }

  cancel.addEventListener("click", () => {
    if (request) request.abort();
  });

  /** @param {string} sending @param {string} done */
  function send(sending, done) {
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
        say(done);
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
    box.hidden = false;
    cancel.hidden = false;
    submit.disabled = true;
    say(sending);
    xhr.send(new FormData(form));
  }

  return { say, send };
}
