// @ts-check
// Draws a waveform on a <canvas> from the server's peaks (one min and one max per bucket, -1..1), so the browser
// never decodes a stem just to draw it. The played part is drawn in the accent colour.

/** @typedef {{duration: number, min: number[], max: number[]}} Peaks */

/**
 * Fetch the peaks of one file.
 * @param {string} url
 * @returns {Promise<Peaks>}
 */
export async function loadPeaks(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error("peaks: HTTP " + response.status);
  return response.json();
}

/**
 * The min and max of the buckets under each of `columns` pixel columns.
 * @param {Peaks} peaks
 * @param {number} columns
 * @returns {{lo: Float32Array, hi: Float32Array}}
 */
export function columnsOf(peaks, columns) {
  const n = peaks.min.length;
  const lo = new Float32Array(columns);
  const hi = new Float32Array(columns);
  for (let x = 0; x < columns; x++) {
    const from = Math.floor((x * n) / columns);
    const to = Math.max(from + 1, Math.floor(((x + 1) * n) / columns));
    let a = 0;
    let b = 0;
    for (let i = from; i < to && i < n; i++) {
      if (peaks.min[i] < a) a = peaks.min[i];
      if (peaks.max[i] > b) b = peaks.max[i];
    }
    lo[x] = a;
    hi[x] = b;
  }
  return { lo, hi };
}

export class Waveform {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {Peaks} peaks
   */
  constructor(canvas, peaks) {
    this.canvas = canvas;
    this.peaks = peaks;
    this.fraction = 0;
    /** @type {{lo: Float32Array, hi: Float32Array} | null} */
    this.cols = null;
    this.resize();
  }

  /** Match the canvas's pixels to its displayed size (and the screen's density), then redraw. */
  resize() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(this.canvas.clientHeight * ratio));
    if (width !== this.canvas.width || height !== this.canvas.height || !this.cols) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.cols = columnsOf(this.peaks, width);
    }
    this.draw();
  }

  /** @param {number} fraction the played part, 0..1 */
  setProgress(fraction) {
    const column = Math.round(fraction * this.canvas.width);
    if (column === Math.round(this.fraction * this.canvas.width)) return;
    this.fraction = fraction;
    this.draw();
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    if (!ctx || !this.cols) return;
    const style = getComputedStyle(this.canvas);
    const played = style.getPropertyValue("--wave-played").trim() || "#1f5fbf";
    const rest = style.getPropertyValue("--wave").trim() || "#8a8a99";
    const { width, height } = this.canvas;
    const middle = height / 2;
    const split = Math.round(this.fraction * width);
    ctx.clearRect(0, 0, width, height);
    for (let x = 0; x < width; x++) {
      ctx.fillStyle = x < split ? played : rest;
      const top = middle - this.cols.hi[x] * middle;
      const bottom = middle - this.cols.lo[x] * middle;
      ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }
}
