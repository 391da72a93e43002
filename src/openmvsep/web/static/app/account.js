// @ts-check
// The Account page's token: "Show" fetches it (the page holds only a masked copy until asked), "Copy" puts it on
// the clipboard. Without this script the Show button posts the form and the server renders the token.

const field = /** @type {HTMLInputElement} */ (document.getElementById("api-token"));
const showForm = /** @type {HTMLFormElement} */ (document.getElementById("token-show-form"));
const reveal = /** @type {HTMLButtonElement} */ (document.getElementById("token-reveal"));
const copy = /** @type {HTMLButtonElement} */ (document.getElementById("token-copy"));
const statusLine = /** @type {HTMLElement} */ (document.getElementById("token-status"));

const masked = field.value;
let token = field.dataset.shown === "yes" ? field.value : "";

/** @returns {Promise<string>} */
async function fetchToken() {
  if (token) return token;
  const csrf = /** @type {HTMLInputElement} */ (showForm.querySelector("input[name=csrf_token]")).value;
  const answer = await fetch(showForm.action, {
    method: "POST",
    headers: { Accept: "application/json", "X-CSRF-Token": csrf },
    credentials: "same-origin",
  });
  if (!answer.ok) throw new Error(`The server answered ${answer.status}; reload the page.`);
  token = (await answer.json()).api_token;
  return token;
}

showForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (field.dataset.shown === "yes") {
    field.value = masked;
    field.dataset.shown = "no";
    reveal.textContent = "Show";
    statusLine.textContent = "Token hidden.";
    return;
  }
  try {
    field.value = await fetchToken();
    field.dataset.shown = "yes";
    reveal.textContent = "Hide";
    statusLine.textContent = "Token shown.";
  } catch (e) {
    statusLine.textContent = e instanceof Error ? e.message : String(e);
  }
});

copy.hidden = !navigator.clipboard;
copy.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(await fetchToken());
    statusLine.textContent = "Token copied to the clipboard.";
  } catch (e) {
    statusLine.textContent = "Could not copy: " + (e instanceof Error ? e.message : String(e));
  }
});
if (field.dataset.shown === "yes") reveal.textContent = "Hide";
