// @ts-check
// A link's download: asks `get-remote` (the API's own answer) every two seconds and opens the job's page once the
// file is downloaded and the separation exists.

const box = document.getElementById("remote");
const line = document.getElementById("remote-status");
const POLL_MS = 2000;

/** @param {string} text @param {boolean} isError */
function say(text, isError) {
  if (!line) return;
  const p = document.createElement("p");
  p.textContent = text;
  if (isError) p.className = "error";
  line.replaceChildren(p);
}

async function poll() {
  if (!box || !box.dataset.poll) return;
  const status = line ? line.dataset.status : "";
  if (status === "failed" || status === "not_found") return;
  try {
    const response = await fetch(box.dataset.poll, { headers: { Accept: "application/json" } });
    const body = await response.json();
    const data = body.data || {};
    if (line) line.dataset.status = body.status;
    if (body.status === "done" && data.hash) {
      window.location.assign("/result/" + encodeURIComponent(data.hash));
      return;
    }
    if (body.status === "failed") return say("Failed: " + (data.message || "the download failed"), true);
    if (body.status === "waiting") say("Waiting to download: position " + data.current_order + " of " + data.queue_count + ".", false);
    else if (data.message) say(data.message, false);
  } catch (_) {
    // the next round tries again
  }
  setTimeout(poll, POLL_MS);
}

setTimeout(poll, POLL_MS);
