// @ts-check
// The result page's mixer: every row's <audio> plays in step with the first one (the clock), one master
// play/pause and position, and per row mute, solo and volume. A row is heard when it is not muted and either
// no row is soloed or it is. Without this script the page keeps the browser's own players.
//
// Keys (outside text fields): space play/pause, ←/→ 5 s back/forward, 1–9 mute row n, shift+1–9 solo row n,
// m / s mute / solo the row that holds the focus.

import { Waveform, loadPeaks } from "./waveform.js";

const DRIFT_S = 0.12; // a row further than this from the clock is moved back into step
const STEP_S = 5;

const mixer = document.getElementById("mixer");
if (mixer) start(mixer);

/** @param {number} s */
function clock(s) {
  if (!isFinite(s) || s < 0) s = 0;
  const m = Math.floor(s / 60);
  const r = Math.floor(s % 60);
  return m + ":" + String(r).padStart(2, "0");
}

/** @param {HTMLElement} root */
function start(root) {
  /** @type {HTMLElement[]} */
  const rows = Array.from(root.querySelectorAll(".track"));
  const audios = rows.map((row) => /** @type {HTMLAudioElement} */ (row.querySelector("audio")));
  const master = audios[0];
  const play = /** @type {HTMLButtonElement} */ (document.getElementById("play"));
  const seek = /** @type {HTMLInputElement} */ (document.getElementById("seek"));
  const time = /** @type {HTMLElement} */ (document.getElementById("time"));
  /** @type {(Waveform | null)[]} */
  const waves = rows.map(() => null);
  const state = rows.map((row) => ({ muted: row.dataset.muted === "true", solo: false, volume: 1 }));

  for (const a of audios) a.removeAttribute("controls");
  root.querySelectorAll(".mix-controls").forEach((el) => el.removeAttribute("hidden"));
  root.classList.add("live");

  function duration() {
    return audios.reduce((d, a) => Math.max(d, isFinite(a.duration) ? a.duration : 0), 0);
  }

  function apply() {
    const anySolo = state.some((s) => s.solo);
    rows.forEach((row, i) => {
      const s = state[i];
      const audible = !s.muted && (!anySolo || s.solo);
      audios[i].muted = !audible;
      audios[i].volume = s.volume;
      row.dataset.audible = String(audible);
      const mute = /** @type {HTMLButtonElement} */ (row.querySelector(".mute"));
      const solo = /** @type {HTMLButtonElement} */ (row.querySelector(".solo"));
      mute.setAttribute("aria-pressed", String(s.muted));
      solo.setAttribute("aria-pressed", String(s.solo));
    });
  }

  /** @param {number} t */
  function moveTo(t) {
    t = Math.max(0, Math.min(duration() || 0, t));
    for (const a of audios) a.currentTime = t;
    show(t);
  }

  /** @param {number} t */
  function show(t) {
    const d = duration();
    time.textContent = clock(t) + " / " + clock(d);
    if (d) {
      seek.value = String(Math.round((t / d) * 1000));
      seek.setAttribute("aria-valuetext", clock(t) + " of " + clock(d));
    }
    waves.forEach((w) => w && w.setProgress(d ? t / d : 0));
  }

  async function toggle() {
    if (master.paused) {
      const t = master.currentTime;
      for (const a of audios) a.currentTime = t;
      try {
        await Promise.all(audios.map((a) => a.play()));
      } catch (e) {
        audios.forEach((a) => a.pause());
        return;
      }
      play.textContent = "Pause";
      play.setAttribute("aria-pressed", "true");
    } else {
      audios.forEach((a) => a.pause());
      play.textContent = "Play";
      play.setAttribute("aria-pressed", "false");
    }
  }

  master.addEventListener("timeupdate", () => {
    const t = master.currentTime;
    if (!master.paused) {
      for (const a of audios) if (a !== master && Math.abs(a.currentTime - t) > DRIFT_S) a.currentTime = t;
    }
    show(t);
  });
  master.addEventListener("ended", () => {
    audios.forEach((a) => a.pause());
    play.textContent = "Play";
    play.setAttribute("aria-pressed", "false");
  });
  master.addEventListener("loadedmetadata", () => show(master.currentTime));

  play.addEventListener("click", toggle);
  seek.addEventListener("input", () => moveTo((Number(seek.value) / 1000) * duration()));

  rows.forEach((row, i) => {
    row.querySelector(".mute")?.addEventListener("click", () => {
      state[i].muted = !state[i].muted;
      apply();
    });
    row.querySelector(".solo")?.addEventListener("click", () => {
      state[i].solo = !state[i].solo;
      apply();
    });
    const volume = /** @type {HTMLInputElement} */ (row.querySelector(".volume"));
    volume.addEventListener("input", () => {
      state[i].volume = Number(volume.value) / 100;
      apply();
    });
    const canvas = /** @type {HTMLCanvasElement} */ (row.querySelector("canvas"));
    canvas.addEventListener("click", (e) => {
      const box = canvas.getBoundingClientRect();
      moveTo(((e.clientX - box.left) / box.width) * duration());
    });
    const url = row.dataset.peaks;
    if (url) {
      loadPeaks(url)
        .then((peaks) => {
          waves[i] = new Waveform(canvas, peaks);
          row.dataset.drawn = "true";
        })
        .catch(() => canvas.setAttribute("hidden", ""));
    }
  });
  window.addEventListener("resize", () => waves.forEach((w) => w && w.resize()));

  document.addEventListener("keydown", (e) => {
    const target = /** @type {HTMLElement} */ (e.target);
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (target.closest("input, select, textarea, [contenteditable]") && !target.closest("#mixer input[type=range]")) return;
    const onRange = target.matches("input[type=range]");
    const digit = /^Digit([1-9])$/.exec(e.code);
    if (e.key === " " && !target.closest("button, a")) {
      e.preventDefault();
      toggle();
    } else if ((e.key === "ArrowLeft" || e.key === "ArrowRight") && !onRange) {
      e.preventDefault();
      moveTo(master.currentTime + (e.key === "ArrowLeft" ? -STEP_S : STEP_S));
    } else if (digit && !onRange) {
      const i = Number(digit[1]) - 1;
      if (i >= rows.length) return;
      e.preventDefault();
      if (e.shiftKey) state[i].solo = !state[i].solo;
      else state[i].muted = !state[i].muted;
      apply();
    } else if ((e.key === "m" || e.key === "s") && !onRange) {
      const row = target.closest(".track");
      if (!row) return;
      const i = rows.indexOf(/** @type {HTMLElement} */ (row));
      e.preventDefault();
      if (e.key === "m") state[i].muted = !state[i].muted;
      else state[i].solo = !state[i].solo;
      apply();
    }
  });

  apply();
  show(0);
}
