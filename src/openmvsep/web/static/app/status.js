// @ts-check
// Live status of one job: server-sent events, or fetching the same fragment every two seconds where the stream
// does not work (a proxy that buffers, a browser without EventSource). When the job is done, the page reloads
// into the result.

const job = document.getElementById("job");
const box = document.getElementById("status");
const TERMINAL = ["done", "failed", "not_found"];
const POLL_MS = 2000;

/** @param {string} html */
function show(html) {
  if (!box) return;
  box.innerHTML = html;
  const state = box.querySelector("[data-status]");
  const status = state ? state.getAttribute("data-status") : null;
  if (job && status) job.dataset.status = status;
  if (status === "done" || status === "failed") announce(status);
  if (status === "done") {
    document.title = "Done · " + document.title.replace(/^Done · /, "");
    window.location.reload();
  }
  tick();
  if (status && status !== "waiting") {
    const cancelForm = document.getElementById("cancel-form");
    if (cancelForm) cancelForm.remove();
  }
  return status;
}

/** The elapsed time, counted here every second from the job's creation (the fragment carries `data-since`). */
function tick() {
  const since = box && box.querySelector("[data-since]");
  if (!since) return;
  const seconds = Math.max(0, Math.floor(Date.now() / 1000 - Number(since.getAttribute("data-since"))));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  since.textContent = h ? `${h} h ${m} min` : `${m}:${s}`;
}
setInterval(tick, 1000);

/** A system notification when the job ends, if the visitor allowed them (the title changes in any case).
 * @param {string} status */
function announce(status) {
  document.title = (status === "done" ? "Done · " : "Failed · ") + document.title.replace(/^(Done|Failed) · /, "");
  if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
  const text = status === "done" ? "The separation is done." : "The separation failed.";
  try {
    new Notification(text, { body: document.title, tag: job ? job.dataset.hash : undefined });
  } catch (_) {
    // some browsers allow notifications only from a service worker: the title says it
  }
}

const notify = /** @type {HTMLButtonElement | null} */ (document.getElementById("notify"));
if (notify && "Notification" in window && Notification.permission === "default") {
  notify.hidden = false;
  notify.addEventListener("click", () => {
    Notification.requestPermission().then((answer) => {
      notify.hidden = true;
      const note = document.getElementById("notify-note");
      if (note) note.textContent = answer === "granted" ? "You will be notified when it ends." : "";
    });
  });
}

function poll() {
  if (!job) return;
  fetch(job.dataset.poll || "", { headers: { Accept: "text/html" } })
    .then((r) => r.text())
    .then((html) => {
      const status = show(html);
      if (!status || !TERMINAL.includes(status)) setTimeout(poll, POLL_MS);
    })
    .catch(() => setTimeout(poll, POLL_MS));
}

function listen() {
  if (!job) return;
  const initial = box && box.querySelector("[data-status]");
  if (initial && TERMINAL.includes(initial.getAttribute("data-status") || "")) return;
  if (!("EventSource" in window)) return poll();
  const source = new EventSource(job.dataset.events || "");
  let heard = false;
  let failures = 0;
  job.dataset.transport = "events";
  source.addEventListener("status", (event) => {
    heard = true;
    failures = 0;
    show(/** @type {MessageEvent} */ (event).data);
  });
  source.addEventListener("end", () => source.close());
  source.addEventListener("error", () => {
    failures += 1;
    // Never heard anything, or keeps failing: the stream does not get through here. Poll instead.
    if ((!heard && failures >= 2) || failures >= 5) {
      source.close();
      job.dataset.transport = "polling";
      poll();
    }
  });
}

listen();
