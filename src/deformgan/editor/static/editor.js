// deformgan editor page: drag the target skeleton, the generated person follows.
//
// The skeleton is redrawn here on every pointer move; the model is asked for a new image with at most one
// request in flight, the newest pose winning, at most one request per MIN_INTERVAL_MS, and always once
// when the joint is released. Every pose change is a command in an undo/redo history. Everything the page
// draws with (joint names, bones, colours, the frame size) comes from the server's /api/info.
"use strict";

(() => {
  const API_HEADERS = { "x-deformgan-editor": "1" };
  const MIN_INTERVAL_MS = 100; // about 10 model updates per second at most
  const HIT_RADIUS = 12; // screen pixels around a joint that grab it
  const MAX_PICKER_ROWS = 300;

  const $ = (id) => document.getElementById(id);
  const S = {
    info: null,
    scale: 1,
    photo: null, // {id, name, image: HTMLImageElement, detected: pose}
    poses: { source: null, target: null }, // arrays of 18 {x, y, shown}
    edit: "target",
    output: null, // HTMLImageElement of the last generated image
    outputUrl: null,
    drag: null, // {which, joint, before, moved}
    undo: [],
    redo: [],
    picker: [],
    video: null,
  };
  const R = { inflight: false, pending: false, final: false, lastStart: -1e9, timer: null, done: 0, sent: 0 };

  // ---------------------------------------------------------------------------------------------
  // Messages and requests

  function say(text, kind) {
    const box = $("message");
    if (!text) { box.hidden = true; box.textContent = ""; return; }
    box.hidden = false;
    box.textContent = text;
    box.className = kind === "error" ? "error" : "note";
  }

  async function call(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new Error("the editor's server does not answer (was it stopped?)");
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) throw new Error((body && body.error) || `request failed (${response.status})`);
    return body;
  }

  const postJSON = (path, value) => call(path, {
    method: "POST",
    headers: { ...API_HEADERS, "content-type": "application/json" },
    body: JSON.stringify(value),
  });

  const upload = (path, file, params) => {
    const limit = S.info.max_upload_mb;
    if (file.size > limit * 1048576) {
      const size = (file.size / 1048576).toFixed(1);
      return Promise.reject(new Error(`${file.name} is ${size} MiB: the editor accepts files up to ${limit} MiB`));
    }
    const query = new URLSearchParams({ name: file.name, ...(params || {}) });
    return call(`${path}?${query}`, {
      method: "POST",
      headers: { ...API_HEADERS, "content-type": "application/octet-stream" },
      body: file,
    });
  };

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error("the browser cannot show an image the server sent"));
      image.src = url;
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Poses: 18 joints {x, y, shown}; x, y are whole model-frame pixels (null: never placed)

  const clone = (pose) => pose.map((j) => ({ ...j }));
  const samePose = (a, b) => a.every((j, i) => j.x === b[i].x && j.y === b[i].y && j.shown === b[i].shown);
  const fromKeypoints = (kp) => kp.map(([x, y]) => (x === -1 && y === -1
    ? { x: null, y: null, shown: false } : { x, y, shown: true }));
  const toKeypoints = (pose) => pose.map((j) => (j.shown ? [j.x, j.y] : [-1, -1]));

  function clampJoint(x, y) {
    const [height, width] = S.info.size;
    return [Math.min(width - 1, Math.max(0, Math.round(x))), Math.min(height - 1, Math.max(0, Math.round(y)))];
  }

  function mirrored(pose, flipX) {
    const width = S.info.size[1];
    return S.info.mirror.map((twin) => {
      const j = { ...pose[twin] };
      if (flipX && j.x !== null) j.x = width - 1 - j.x;
      return j;
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Command history

  function setPose(which, pose) {
    S.poses[which] = pose;
    redraw();
    requestRender(true);
  }

  function command(label, which, after) {
    const before = clone(S.poses[which]);
    if (samePose(before, after)) return;
    S.undo.push({ label, which, before, after: clone(after) });
    S.redo.length = 0;
    setPose(which, clone(after));
    updateButtons();
  }

  function undo() {
    const c = S.undo.pop();
    if (!c) return;
    S.redo.push(c);
    setPose(c.which, clone(c.before));
    updateButtons();
  }

  function redo() {
    const c = S.redo.pop();
    if (!c) return;
    S.undo.push(c);
    setPose(c.which, clone(c.after));
    updateButtons();
  }

  function updateButtons() {
    const last = S.undo[S.undo.length - 1];
    const next = S.redo[S.redo.length - 1];
    $("undo").disabled = !last;
    $("redo").disabled = !next;
    $("undo").title = last ? `Undo: ${last.label} (Ctrl+Z)` : "Nothing to undo";
    $("redo").title = next ? `Redo: ${next.label} (Ctrl+Y)` : "Nothing to redo";
    const ready = Boolean(S.photo);
    for (const id of ["from-source", "mirror", "swap", "reset", "save-json", "save-csv"]) $(id).disabled = !ready;
  }

  // ---------------------------------------------------------------------------------------------
  // Drawing (in the browser, on every pointer move)

  function rgb(c, alpha) { return `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${alpha === undefined ? 1 : alpha})`; }

  function drawSkeleton(ctx, pose, active) {
    const s = S.scale;
    const at = (j) => [(j.x + 0.5) * s, (j.y + 0.5) * s];
    ctx.lineCap = "round";
    S.info.limbs.forEach(([a, b], bone) => {
      const ja = pose[a], jb = pose[b];
      if (!ja.shown || !jb.shown) return;
      const [xa, ya] = at(ja), [xb, yb] = at(jb);
      ctx.strokeStyle = rgb(S.info.joint_colors[bone % S.info.joint_colors.length], 0.85);
      ctx.lineWidth = Math.max(2, s * 0.9);
      ctx.beginPath(); ctx.moveTo(xa, ya); ctx.lineTo(xb, yb); ctx.stroke();
    });
    pose.forEach((j, i) => {
      if (!j.shown) return;
      const [x, y] = at(j);
      const r = Math.max(4, s * 1.4);
      ctx.fillStyle = rgb(S.info.joint_colors[i]);
      ctx.strokeStyle = active === i ? "#fff" : "rgba(0, 0, 0, 0.7)";
      ctx.lineWidth = active === i ? 3 : 1.5;
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    });
  }

  function drawCanvas(which) {
    const canvas = $(`${which}-canvas`);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const image = which === "source" ? S.photo && S.photo.image : S.output;
    if (image) ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    else {
      ctx.fillStyle = "#9aa1ab";
      ctx.font = "14px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.fillText(which === "source" ? "load a photo" : "", canvas.width / 2, canvas.height / 2);
    }
    const pose = S.poses[which];
    const showSkeleton = which === "source" || $("skeleton").checked;
    if (pose && showSkeleton) {
      const active = S.drag && S.drag.which === which ? S.drag.joint : -1;
      drawSkeleton(ctx, pose, active);
    }
  }

  function redraw() {
    drawCanvas("source");
    drawCanvas("target");
    drawJointList();
  }

  function drawJointList() {
    const list = $("joint-list");
    const pose = S.poses[S.edit];
    $("joints-which").textContent = S.edit;
    if (list.children.length !== S.info.joint_names.length) {
      list.textContent = "";
      S.info.joint_names.forEach((name, i) => {
        const li = document.createElement("li");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.dataset.joint = String(i);
        box.addEventListener("change", () => toggleJoint(i, box.checked));
        const chip = document.createElement("span");
        chip.className = "chip";
        chip.style.background = rgb(S.info.joint_colors[i]);
        const label = document.createElement("span");
        label.className = "name";
        label.textContent = name;
        const coords = document.createElement("span");
        coords.className = "coords";
        li.append(box, chip, label, coords);
        list.append(li);
      });
    }
    [...list.children].forEach((li, i) => {
      const j = pose ? pose[i] : null;
      const box = li.querySelector("input");
      box.checked = Boolean(j && j.shown);
      box.disabled = !pose;
      li.classList.toggle("missing", !(j && j.shown));
      li.querySelector(".coords").textContent = j && j.shown ? `${j.x}, ${j.y}` : "missing";
    });
  }

  function toggleJoint(i, show) {
    const which = S.edit;
    const pose = clone(S.poses[which]);
    if (show && pose[i].x === null) [pose[i].x, pose[i].y] = S.info.template[i];
    pose[i].shown = show;
    command(`${show ? "show" : "hide"} ${S.info.joint_names[i]}`, which, pose);
  }

  // ---------------------------------------------------------------------------------------------
  // Dragging

  function eventPoint(canvas, event) {
    const rect = canvas.getBoundingClientRect();
    const sx = canvas.width / rect.width, sy = canvas.height / rect.height;
    return [(event.clientX - rect.left) * sx, (event.clientY - rect.top) * sy];
  }

  function nearestJoint(which, px, py) {
    const pose = S.poses[which];
    if (!pose) return -1;
    let best = -1, bestDistance = HIT_RADIUS;
    pose.forEach((j, i) => {
      if (!j.shown) return;
      const d = Math.hypot((j.x + 0.5) * S.scale - px, (j.y + 0.5) * S.scale - py);
      if (d <= bestDistance) { best = i; bestDistance = d; }
    });
    return best;
  }

  function setEdit(which) {
    S.edit = which;
    document.querySelector(`input[name="edit"][value="${which}"]`).checked = true;
    drawJointList();
  }

  function attachDragging(which) {
    const canvas = $(`${which}-canvas`);
    canvas.addEventListener("pointerdown", (event) => {
      if (!S.photo || (which === "target" && !$("skeleton").checked)) return;
      const [px, py] = eventPoint(canvas, event);
      const joint = nearestJoint(which, px, py);
      if (joint < 0) return;
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      if (S.edit !== which) setEdit(which);
      S.drag = { which, joint, before: clone(S.poses[which]), moved: false };
      canvas.classList.add("dragging");
      redraw();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!S.drag || S.drag.which !== which) return;
      const [px, py] = eventPoint(canvas, event);
      const [x, y] = clampJoint(px / S.scale - 0.5, py / S.scale - 0.5);
      const j = S.poses[which][S.drag.joint];
      if (j.x === x && j.y === y) return;
      j.x = x; j.y = y;
      S.drag.moved = true;
      redraw(); // the skeleton follows the pointer at once
      requestRender(false); // the model follows as fast as it can
    });
    const release = (event) => {
      if (!S.drag || S.drag.which !== which) return;
      const { joint, before, moved } = S.drag;
      S.drag = null;
      canvas.classList.remove("dragging");
      if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
      if (moved) {
        const after = clone(S.poses[which]);
        S.poses[which] = before;
        command(`move ${S.info.joint_names[joint]}`, which, after); // one command per drag; renders once more
      } else redraw();
    };
    canvas.addEventListener("pointerup", release);
    canvas.addEventListener("pointercancel", release);
    canvas.addEventListener("dblclick", (event) => {
      const [px, py] = eventPoint(canvas, event);
      const joint = nearestJoint(which, px, py);
      if (joint < 0) return;
      if (S.edit !== which) setEdit(which);
      toggleJoint(joint, false);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering: one request in flight, newest pose wins, at most one per MIN_INTERVAL_MS

  function requestRender(final) {
    if (!S.photo) return;
    R.pending = true;
    R.final = R.final || final;
    pump();
  }

  function pump() {
    if (R.inflight || !R.pending) return;
    const wait = R.lastStart + MIN_INTERVAL_MS - performance.now();
    if (wait > 0) {
      if (!R.timer) R.timer = setTimeout(() => { R.timer = null; pump(); }, wait);
      return;
    }
    const final = R.final;
    R.pending = false;
    R.final = false;
    R.inflight = true;
    R.lastStart = performance.now();
    R.sent += 1;
    const overlays = $("overlays").checked;
    const started = performance.now();
    postJSON("/api/render", {
      photo: S.photo.id,
      source: toKeypoints(S.poses.source),
      target: toKeypoints(S.poses.target),
      overlays,
      final,
    }).then(async (result) => {
      S.output = await loadImage(result.image);
      S.outputUrl = result.image;
      if (overlays) showOverlays(result);
      const download = $("download");
      download.href = result.image;
      download.classList.remove("disabled");
      download.setAttribute("aria-disabled", "false");
      const roundTrip = performance.now() - started;
      $("timing").textContent = `update: model ${result.timings.total.toFixed(0)} ms · round trip ${roundTrip.toFixed(0)} ms`;
      R.done += 1;
      document.body.dataset.renders = String(R.done);
      drawCanvas("target");
    }).catch((err) => say(err.message, "error")).finally(() => {
      R.inflight = false;
      pump();
    });
  }

  function showOverlays(result) {
    if (result.masks) $("masks").src = result.masks;
    if (result.warped) $("warped").src = result.warped;
    const strip = $("parts-strip");
    if (!result.parts) { strip.textContent = ""; return; }
    const names = result.parts.length === S.info.part_names.length ? S.info.part_names : ["whole body"];
    if (strip.children.length !== result.parts.length) {
      strip.textContent = "";
      names.forEach((name) => {
        const figure = document.createElement("figure");
        const image = document.createElement("img");
        image.alt = name;
        image.width = S.info.size[1] * Math.max(1, S.scale / 2);
        image.height = S.info.size[0] * Math.max(1, S.scale / 2);
        const caption = document.createElement("figcaption");
        caption.textContent = name;
        figure.append(image, caption);
        strip.append(figure);
      });
    }
    result.parts.forEach((url, i) => { strip.children[i].querySelector("img").src = url; });
  }

  function setOverlaysVisible() {
    const on = $("overlays").checked && S.info.warp_skip !== "none";
    document.querySelectorAll(".overlay").forEach((el) => { el.hidden = !on; });
  }

  // ---------------------------------------------------------------------------------------------
  // Loading photos, poses and videos

  async function loadPhoto(file) {
    say(`reading ${file.name}…`);
    const result = await upload("/api/photo", file, { framing: $("framing").value });
    const image = await loadImage(result.image);
    const pose = fromKeypoints(result.keypoints);
    S.photo = { id: result.id, name: file.name, image, detected: clone(pose) };
    S.poses.source = clone(pose);
    S.poses.target = clone(pose);
    S.undo.length = 0;
    S.redo.length = 0; // the history is per photo
    S.output = null;
    const stem = file.name.replace(/\.[^.]*$/, "") || "result";
    $("download").download = `${stem}-posed.png`;
    say(result.note || "");
    updateButtons();
    redraw();
    requestRender(true);
  }

  function applyPose(label, keypoints) {
    const current = S.poses[S.edit];
    const pose = fromKeypoints(keypoints);
    // a joint the new pose lacks keeps its last position for when it is shown again
    pose.forEach((j, i) => { if (!j.shown && current[i].x !== null) { j.x = current[i].x; j.y = current[i].y; } });
    command(label, S.edit, pose);
  }

  function fillPicker(poses) {
    S.picker = poses;
    $("picker").hidden = false;
    $("picker-filter").value = "";
    listPicker();
  }

  function listPicker() {
    const filter = $("picker-filter").value.trim().toLowerCase();
    const list = $("picker-list");
    list.textContent = "";
    const matches = S.picker.filter((p) => p.name.toLowerCase().includes(filter));
    const placeholder = document.createElement("option");
    placeholder.value = "";
    placeholder.textContent = `choose a pose (${matches.length})`;
    list.append(placeholder);
    matches.slice(0, MAX_PICKER_ROWS).forEach((p) => {
      const option = document.createElement("option");
      option.value = String(S.picker.indexOf(p));
      option.textContent = p.name;
      list.append(option);
    });
    $("picker-count").textContent = matches.length > MAX_PICKER_ROWS ? `first ${MAX_PICKER_ROWS} shown` : "";
  }

  async function loadPoseFile(file) {
    const result = await upload("/api/pose-import", file);
    if (result.poses.length === 1) {
      $("picker").hidden = true;
      applyPose(`pose from ${file.name}`, result.poses[0].keypoints);
      say("");
    } else {
      fillPicker(result.poses);
      say(`${file.name}: ${result.poses.length} poses; choose one`);
    }
  }

  async function loadVideo(file) {
    say(`reading ${file.name}…`);
    const result = await upload("/api/video", file);
    S.video = { id: result.id, name: file.name, frames: result.frames };
    const slider = $("video-frame");
    slider.max = String(result.frames - 1);
    slider.value = "0";
    $("video-controls").hidden = false;
    say(`${file.name}: ${result.frames} frames; move the slider to take a frame's pose`);
    await videoFrame(0);
  }

  async function videoFrame(index) {
    $("video-index").textContent = String(index);
    const result = await postJSON("/api/video-frame", { video: S.video.id, index, framing: "person" });
    $("video-thumb").src = result.image;
    applyPose(`pose of ${S.video.name} frame ${index}`, result.keypoints);
    say(result.note || "");
  }

  async function savePose(format) {
    const name = S.photo ? S.photo.name.replace(/\.[^.]*$/, "") + "-pose" : "pose";
    const result = await postJSON("/api/pose-export", { keypoints: toKeypoints(S.poses[S.edit]), format, name });
    const blob = new Blob([result.text], { type: format === "csv" ? "text/csv" : "application/json" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = result.filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring

  const guarded = (fn) => async (...args) => {
    try { await fn(...args); } catch (err) { say(err.message, "error"); }
  };

  function onFile(id, fn) {
    const input = $(id);
    input.addEventListener("change", guarded(async () => {
      const file = input.files[0];
      input.value = "";
      if (file) await fn(file);
    }));
  }

  function sizeCanvases() {
    const [height, width] = S.info.size;
    S.scale = Math.max(1, Math.min(4, Math.floor(512 / height), Math.floor(512 / width)));
    for (const id of ["source-canvas", "target-canvas"]) {
      $(id).width = width * S.scale;
      $(id).height = height * S.scale;
    }
    for (const id of ["masks", "warped"]) {
      $(id).width = width * S.scale;
      $(id).height = height * S.scale;
    }
  }

  function drawLegend() {
    const legend = $("legend");
    legend.textContent = "";
    S.info.part_names.forEach((name, i) => {
      const item = document.createElement("span");
      const chip = document.createElement("span");
      chip.className = "chip square";
      chip.style.background = rgb(S.info.part_colors[i]);
      item.append(chip, document.createTextNode(i === 0 ? `${name} (the whole frame)` : name));
      legend.append(item);
    });
  }

  async function start() {
    S.info = await call("/api/info");
    const [height, width] = S.info.size;
    const skips = { mask: "deformable skips", global: "one global affine", none: "Baseline (plain skips)" };
    $("model-info").textContent = `model ${S.info.name} · ${height}×${width} · ${skips[S.info.warp_skip] || S.info.warp_skip}` +
      ` · width ${S.info.width}${S.info.preview === "bf16" ? " · bf16 while dragging" : ""}`;
    if (!S.info.pose_model) {
      $("framing").value = "whole";
      $("framing").querySelector('option[value="person"]').disabled = true;
      say(S.info.pose_message);
    }
    sizeCanvases();
    drawLegend();
    setOverlaysVisible();
    attachDragging("target");
    attachDragging("source");
    onFile("photo-file", loadPhoto);
    onFile("pose-photo-file", async (file) => {
      const result = await upload("/api/photo-pose", file, { framing: $("framing").value });
      applyPose(`pose of ${file.name}`, result.keypoints);
      say(result.note || "");
    });
    onFile("pose-file", loadPoseFile);
    onFile("video-file", loadVideo);
    $("picker-filter").addEventListener("input", listPicker);
    $("picker-list").addEventListener("change", () => {
      const value = $("picker-list").value;
      if (value === "") return;
      const p = S.picker[Number(value)];
      applyPose(`pose ${p.name}`, p.keypoints);
      say("");
    });
    $("video-frame").addEventListener("input", () => { $("video-index").textContent = $("video-frame").value; });
    $("video-frame").addEventListener("change", guarded(() => videoFrame(Number($("video-frame").value))));
    document.querySelectorAll('input[name="edit"]').forEach((radio) => {
      radio.addEventListener("change", () => setEdit(radio.value));
    });
    $("overlays").addEventListener("change", () => { setOverlaysVisible(); requestRender(true); });
    $("skeleton").addEventListener("change", () => drawCanvas("target"));
    $("undo").addEventListener("click", undo);
    $("redo").addEventListener("click", redo);
    $("from-source").addEventListener("click", () => command("pose from the source", S.edit, clone(S.poses.source)));
    $("mirror").addEventListener("click", () => command("mirror", S.edit, mirrored(S.poses[S.edit], true)));
    $("swap").addEventListener("click", () => command("swap left/right", S.edit, mirrored(S.poses[S.edit], false)));
    $("reset").addEventListener("click", () => command("reset", S.edit,
      clone(S.edit === "target" ? S.poses.source : S.photo.detected)));
    $("save-json").addEventListener("click", guarded(() => savePose("openpose")));
    $("save-csv").addEventListener("click", guarded(() => savePose("csv")));
    document.addEventListener("keydown", (event) => {
      if (!(event.ctrlKey || event.metaKey) || event.target.matches("input[type=search]")) return;
      const key = event.key.toLowerCase();
      if (key === "z" && !event.shiftKey) { event.preventDefault(); undo(); }
      else if (key === "y" || (key === "z" && event.shiftKey)) { event.preventDefault(); redo(); }
    });
    updateButtons();
    redraw();
    document.body.dataset.ready = "1";
  }

  // For tests and the curious: the state and whether the model has caught up with the pose.
  window.deformganEditor = {
    state: S,
    idle: () => !R.inflight && !R.pending && !R.timer,
    requests: () => R.sent,
  };

  document.addEventListener("DOMContentLoaded", guarded(start));
})();
