// The drawing page: a pad, the drawing made MNIST-style in the browser, and the served version's answer.

const SIDE = 28; // MNIST images are SIDE×SIDE pixels
const BOX = 20; // and the digit's longest side is BOX pixels
const INK = 0.15 * 255; // brighter than this (after inversion) is ink when cropping
const PRECISION_BITS = 22; // PIL's fixed-point weights for 8-bit images: 32 - 8 - 2
const THROTTLE_MS = 250; // at most one request per this while the pen is down
const TOKEN_KEY = "mnist37-token";

// --- MNIST-style pixels, step for step as mnist_style in service/client/images.py -----------------

/** RGBA pixels → gray levels as PIL's convert("L") makes them (ITU-R 601-2 luma in 16-bit fixed point). */
function grayOf({ data, width, height }) {
  const gray = new Uint8Array(width * height);
  for (let i = 0; i < gray.length; i += 1) {
    gray[i] = (data[4 * i] * 19595 + data[4 * i + 1] * 38470 + data[4 * i + 2] * 7471 + 0x8000) >> 16;
  }
  return gray;
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x) {
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
}

function sinc(x) {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos3(x) {
  return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

/** PIL's precompute_coeffs and normalize_coeffs_8bpc for LANCZOS: per output pixel, its first input
 * pixel and integer weights in units of 2^-22, computed in the same order so they round the same. */
function lanczosTaps(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const ss = 1 / filterScale;
  const taps = [];
  for (let out = 0; out < outSize; out += 1) {
    const centre = (out + 0.5) * scale;
    const first = Math.max(0, Math.trunc(centre - support + 0.5));
    const end = Math.min(inSize, Math.trunc(centre + support + 0.5));
    const weights = [];
    for (let i = first; i < end; i += 1) weights.push(lanczos3((i - centre + 0.5) * ss));
    const total = weights.reduce((a, b) => a + b, 0);
    const fixed = weights.map((w) => {
      const k = (total !== 0 ? w / total : w) * 2 ** PRECISION_BITS;
      return Math.trunc(k < 0 ? k - 0.5 : k + 0.5);
    });
    taps.push({ first, fixed });
  }
  return taps;
}

/** One pass of PIL's 8-bit resampling along rows (stride 1) or columns (stride = width); clip8 rounds. */
function resamplePass(src, width, height, outWidth, outHeight, horizontal) {
  const taps = lanczosTaps(horizontal ? width : height, horizontal ? outWidth : outHeight);
  const out = new Uint8Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y += 1) {
    for (let x = 0; x < outWidth; x += 1) {
      const { first, fixed } = taps[horizontal ? x : y];
      let sum = 2 ** (PRECISION_BITS - 1);
      for (let j = 0; j < fixed.length; j += 1) {
        sum += fixed[j] * (horizontal ? src[y * width + first + j] : src[(first + j) * width + x]);
      }
      out[y * outWidth + x] = Math.min(255, Math.max(0, Math.floor(sum / 2 ** PRECISION_BITS)));
    }
  }
  return out;
}

/** (h, w) uint8 → (outH, outW) as Pillow 13's Image.resize(..., LANCZOS): rows first, unless the height
 * shrinks by more than twice what the width does; each pass rounds to uint8, so the order shows. */
function resizeLanczos(pixels, width, height, outWidth, outHeight) {
  const rows = (image, h) => (outWidth === width ? image : resamplePass(image, width, h, outWidth, h, true));
  const columns = (image, w) => (outHeight === height ? image : resamplePass(image, w, height, w, outHeight, false));
  const rowsFirst = !(height - outHeight > 0 && height - outHeight > (width - outWidth) * 2);
  return rowsFirst ? columns(rows(pixels, height), outWidth) : rows(columns(pixels, width), outHeight);
}

/** Ink on the page as floats: inverted when the paper is light, paper tone → 0, brightest ink → 255.
 * A Float32Array rounds every stored value to float32, as numpy's float32 arithmetic does. */
function inkOf(gray, width, height) {
  const border = [];
  for (let x = 0; x < width; x += 1) border.push(gray[x], gray[(height - 1) * width + x]);
  for (let y = 0; y < height; y += 1) border.push(gray[y * width], gray[y * width + width - 1]);
  const invert = Math.fround(border.reduce((a, b) => a + b, 0) / border.length) > 127;
  const paper = (invert ? border.map((v) => 255 - v) : border).sort((a, b) => a - b);
  const median = (paper[paper.length / 2 - 1] + paper[paper.length / 2]) / 2; // 2(w + h) values: always even
  const ink = new Float32Array(gray.length);
  let brightest = 0;
  for (let i = 0; i < gray.length; i += 1) {
    ink[i] = Math.max(0, (invert ? 255 - gray[i] : gray[i]) - median);
    brightest = Math.max(brightest, ink[i]);
  }
  if (brightest <= 0) return null;
  const gain = Math.fround(255 / brightest);
  for (let i = 0; i < ink.length; i += 1) ink[i] *= gain;
  return ink;
}

/** The ink's bounding box (threshold INK), cut out as uint8 (truncated, as numpy's astype). */
function cropped(ink, width, height) {
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      if (ink[y * width + x] > INK) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  const w = right - left + 1, h = bottom - top + 1;
  const pixels = new Uint8Array(w * h);
  for (let y = 0; y < h; y += 1) {
    for (let x = 0; x < w; x += 1) pixels[y * w + x] = Math.trunc(ink[(top + y) * width + left + x]);
  }
  return { pixels, w, h };
}

/** Shifted so the centre of mass sits at (13.5, 13.5), wrapping round as np.roll does. */
function centredByMass(canvas) {
  let mass = 0, sumY = 0, sumX = 0;
  for (let i = 0; i < canvas.length; i += 1) {
    mass += canvas[i];
    sumY += Math.floor(i / SIDE) * canvas[i];
    sumX += (i % SIDE) * canvas[i];
  }
  if (mass === 0) return canvas;
  const dy = roundHalfEven(13.5 - sumY / mass), dx = roundHalfEven(13.5 - sumX / mass);
  const wrap = (v) => ((v % SIDE) + SIDE) % SIDE;
  const out = new Uint8Array(SIDE * SIDE);
  for (let i = 0; i < canvas.length; i += 1) {
    out[wrap(Math.floor(i / SIDE) + dy) * SIDE + wrap((i % SIDE) + dx)] = canvas[i];
  }
  return out;
}

/** ImageData of a drawing, either polarity → 784 uint8 pixels, a white digit on black, as MNIST draws it. */
function mnistStyle(imageData) {
  const { width, height } = imageData;
  const ink = inkOf(grayOf(imageData), width, height);
  if (ink === null) return new Uint8Array(SIDE * SIDE);
  const { pixels, w, h } = cropped(ink, width, height);
  const scale = BOX / Math.max(h, w);
  const fw = Math.max(1, roundHalfEven(w * scale)), fh = Math.max(1, roundHalfEven(h * scale));
  const fitted = resizeLanczos(pixels, w, h, fw, fh);
  const canvas = new Uint8Array(SIDE * SIDE);
  const top = Math.floor((SIDE - fh) / 2), left = Math.floor((SIDE - fw) / 2);
  for (let y = 0; y < fh; y += 1) canvas.set(fitted.subarray(y * fw, (y + 1) * fw), (top + y) * SIDE + left);
  return centredByMass(canvas);
}

// --- The server: the Open Inference Protocol's REST API on this page's own origin -------------------

class CallError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const model = document.querySelector('meta[name="mnist37-model"]').content;
const modelPath = `/v2/models/${encodeURIComponent(model)}`;
const tokenField = document.getElementById("token");

async function call(path, init = {}) {
  const headers = new Headers(init.headers);
  const token = tokenField.value.trim();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let response;
  try {
    response = await fetch(path, { ...init, headers, cache: "no-store" });
  } catch {
    throw new CallError(0, "the server cannot be reached");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new CallError(response.status, body.error || response.statusText);
  return body;
}

/** The served version, its "neither" threshold (null when it cannot abstain). */
async function metadata() {
  const body = await call(modelPath);
  return { version: body.versions[0], threshold: body.parameters?.ood_threshold ?? null };
}

/** 784 uint8 pixels → the answer's outputs by name, and the version that computed them. */
async function infer(image) {
  const tensor = { name: "image", shape: [1, SIDE * SIDE], datatype: "UINT8", data: Array.from(image) };
  const body = await call(`${modelPath}/infer`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ inputs: [tensor] }),
  });
  const outputs = Object.fromEntries(body.outputs.map((o) => [o.name, o.data[0]]));
  return { ...outputs, version: body.model_version };
}

function explained(err) {
  if (err.status === 401) return "This server needs an access token: enter it in the “Access token” field.";
  if (err.status === 503) return `No model is served yet (${err.message}). Draw again in a moment.`;
  if (err.status === 429) return `The server is busy (${err.message}). Your next stroke asks again.`;
  return err.status ? `The server refused (${err.status}): ${err.message}` : `Error: ${err.message}`;
}

// --- The page --------------------------------------------------------------------------------------

const pad = document.getElementById("pad");
const pen = pad.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen").getContext("2d");
const result = document.getElementById("result");
const shown = Object.fromEntries(
  ["digit", "p-three", "verdict", "version", "status"].map((id) => [id, document.getElementById(id)]),
);

let served = null; // {version, threshold} from the metadata, or null until it arrives
let answer = null; // the last answer shown
let revision = 0; // bumped whenever what should be sent changes
let sent = 0; // the revision last sent
let cleared = 0; // answers to revisions up to this one come too late to be shown
let inked = false;
let stroke = null; // {id, x, y}: the pointer drawing now and where it last was
let inFlight = false;
let timer = 0;
let lastSend = -Infinity;

function clearPad() {
  pen.fillStyle = "#ffffff";
  pen.fillRect(0, 0, pad.width, pad.height);
  pen.strokeStyle = pen.fillStyle = "#1b1f3b";
  pen.lineWidth = pad.width / 14; // about MNIST's 2–3 pixel strokes once scaled to 20 pixels
  pen.lineCap = pen.lineJoin = "round";
  seen.clearRect(0, 0, SIDE, SIDE);
  inked = false;
  stroke = null;
  answer = null;
  cleared = sent = revision += 1;
  clearTimeout(timer);
  timer = 0;
  result.classList.remove("abstained");
  for (const id of ["digit", "p-three", "version"]) shown[id].textContent = "–";
  shown.verdict.textContent = "Nothing drawn yet.";
  result.setAttribute("aria-busy", "false");
}

function show() {
  if (answer === null) return;
  shown.digit.textContent = String(answer.digit);
  shown["p-three"].textContent = answer.p_three.toFixed(3);
  shown.version.textContent = answer.version;
  const known = answer.known ?? true;
  result.classList.toggle("abstained", !known);
  const threshold = served?.version === answer.version ? served.threshold : null;
  const limit = threshold === null ? "" : `, threshold ${threshold.toFixed(3)}`;
  const score = answer.ood_score === undefined ? "" : ` (ood score ${answer.ood_score.toFixed(3)}${limit})`;
  shown.verdict.textContent = known ? `Looks like a ${answer.digit}${score}.` : `This is neither 3 nor 7${score}.`;
}

function showSeen(image) {
  const pixels = seen.createImageData(SIDE, SIDE);
  image.forEach((v, i) => pixels.data.set([v, v, v, 255], 4 * i));
  seen.putImageData(pixels, 0, 0);
}

async function refreshMetadata() {
  try {
    served = await metadata();
    show();
  } catch (err) {
    served = null;
    shown.status.textContent = explained(err);
  }
}

/** Send the drawing now if nothing is in flight; while the pen is down, at most once per THROTTLE_MS. */
function schedule() {
  if (inFlight || timer || sent === revision || !inked) return;
  const wait = stroke === null ? 0 : Math.max(0, lastSend + THROTTLE_MS - performance.now());
  timer = setTimeout(send, wait);
}

async function send() {
  timer = 0;
  const asked = (sent = revision);
  const image = mnistStyle(pen.getImageData(0, 0, pad.width, pad.height));
  showSeen(image);
  inFlight = true;
  lastSend = performance.now();
  try {
    const got = await infer(image);
    if (asked > cleared) {
      answer = got;
      shown.status.textContent = "";
      if (served?.version !== got.version) await refreshMetadata(); // the alias moved: its threshold too
      show();
    }
  } catch (err) {
    if (asked > cleared) shown.status.textContent = explained(err);
  } finally {
    inFlight = false;
    if (sent === revision) result.setAttribute("aria-busy", "false");
    schedule();
  }
}

function changed() {
  revision += 1;
  result.setAttribute("aria-busy", String(inked));
  schedule();
}

/** A pointer's position in the pad's own pixels, whatever size CSS draws the pad at. */
function at(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

pad.addEventListener("pointerdown", (event) => {
  if (stroke !== null || event.button !== 0) return; // one stroke at a time; no pen eraser
  pad.setPointerCapture(event.pointerId);
  stroke = { id: event.pointerId, ...at(event) };
  pen.beginPath();
  pen.arc(stroke.x, stroke.y, pen.lineWidth / 2, 0, 2 * Math.PI);
  pen.fill();
  inked = true;
  changed();
});

pad.addEventListener("pointermove", (event) => {
  if (stroke?.id !== event.pointerId) return;
  const points = event.getCoalescedEvents?.() ?? [];
  pen.beginPath();
  pen.moveTo(stroke.x, stroke.y);
  for (const point of points.length ? points : [event]) {
    Object.assign(stroke, at(point));
    pen.lineTo(stroke.x, stroke.y);
  }
  pen.stroke();
  changed();
});

function lifted(event) {
  if (stroke?.id !== event.pointerId) return;
  stroke = null;
  clearTimeout(timer); // the pen is up: answer now rather than at the throttle's pace
  timer = 0;
  schedule();
}

pad.addEventListener("pointerup", lifted);
pad.addEventListener("pointercancel", lifted);
pad.addEventListener("lostpointercapture", lifted);
pad.addEventListener("keydown", (event) => {
  if (["Delete", "Backspace", "Escape"].includes(event.key)) {
    event.preventDefault();
    clearPad();
  }
});
document.getElementById("clear").addEventListener("click", clearPad);

let tokenTimer = 0;
tokenField.value = sessionStorage.getItem(TOKEN_KEY) ?? "";
tokenField.addEventListener("input", () => {
  sessionStorage.setItem(TOKEN_KEY, tokenField.value.trim());
  clearTimeout(tokenTimer);
  tokenTimer = setTimeout(() => {
    shown.status.textContent = "";
    refreshMetadata();
    changed(); // ask again with the new token
  }, 300);
});

document.getElementById("model").textContent = model;
clearPad();
refreshMetadata();

window.mnist37 = { mnistStyle, resizeLanczos };
