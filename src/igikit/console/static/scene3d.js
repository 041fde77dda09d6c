// igikit console: the 3D navigation scene (structures, target, planned trajectory, tool) and its numbers.
// An ES module, imported by console.js with the first `scene` message; three.js is served by the
// console itself under /vendor/ (installed from npm at build time), imported here so that a missing
// install shows a message in the panel instead of a blank view.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = { target: "#ffd33d", trajectory: "#39d0ff", tool: "#c9d1d9", ok: "#3fb950", warn: "#f85149", guide: "#ffd33d" };
// Anterior-oblique first view in LPS: the camera in front of the patient (-y), a little to the
// patient's left (+x) and above (+z); superior is up on the screen.
const VIEW_DIRECTION = [0.45, -1.0, 0.55];

const stats = {
  scenes: 0, meshes: 0, triangles: 0, toolMessages: 0, toolUpdates: 0, renders: 0, webgl: null, three: null, error: null,
  lastTip: null, latencies: [],
};
window.igikitScene = stats;  // read by the browser tests

let THREE = null;
let OrbitControls = null;
let view = null;             // {renderer, scene, camera, controls, structures, tool...}
let pendingTool = null;
let renderQueued = false;
let building = null;

// ------------------------------------------------------------------ entry point (console.js)
export function receive(msg) {
  if (msg.type === "scene") {
    showPanel();
    building = (building || Promise.resolve()).then(() => buildScene(msg)).catch(fail);
  } else if (msg.type === "tool") {
    pendingTool = msg;  // latest wins: a slow GPU draws fewer updates, never older ones
    stats.toolMessages += 1;
    queueRender();
  }
}

function showPanel() {
  $("scene-panel").hidden = false;
  $("console-view").classList.add("navigation");
  followFrames();
}

// A navigation session without images: the empty frame panel and trace plot stay out of the way.
function followFrames() {
  $("console-view").classList.toggle("no-frames", !(window.igikitStats && window.igikitStats.frames > 0));
}

function fail(error) {
  stats.error = String(error && error.message ? error.message : error);
  const box = $("scene-message");
  box.textContent = stats.error;
  box.hidden = false;
  console.error("3D scene:", error);
  queueRender();
}

// ------------------------------------------------------------------ loading three.js
async function loadThree() {
  if (THREE) return;
  try {
    THREE = await import("/vendor/three.module.js");
    ({ OrbitControls } = await import("/vendor/OrbitControls.js"));
  } catch (error) {
    // say why: the console's 404 names the missing install and how to fix it
    let why = "";
    try {
      const response = await fetch("/vendor/three.module.js", { method: "GET", credentials: "same-origin" });
      if (!response.ok) why = (await response.json()).detail || response.statusText;
    } catch (e) { /* offline */ }
    throw new Error("3D view unavailable: " + (why || `three.js could not be loaded (${error})`));
  }
  stats.three = THREE.REVISION;
}

function webglAvailable() {
  const probe = document.createElement("canvas");
  return Boolean(probe.getContext("webgl2") || probe.getContext("webgl"));
}

// ------------------------------------------------------------------ scene
function decode(base64, Type) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Type(bytes.buffer);
}

function createView() {
  stats.webgl = webglAvailable();
  if (!stats.webgl) throw new Error("3D view unavailable: this browser has no WebGL (enable hardware acceleration)");
  const host = $("scene-view");
  const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setClearColor(0x0b0f14, 1);
  host.prepend(renderer.domElement);
  renderer.domElement.id = "scene-canvas";
  const camera = new THREE.PerspectiveCamera(35, 1, 0.5, 5000);
  camera.up.set(0, 0, 1);  // LPS: +z superior
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.addEventListener("change", queueRender);
  const scene = new THREE.Scene();
  scene.add(new THREE.HemisphereLight(0xdde6f0, 0x20242c, 1.6));
  const headlight = new THREE.DirectionalLight(0xffffff, 1.8);
  camera.add(headlight);
  headlight.position.set(0.3, 0.6, 1);
  scene.add(camera);
  const v = { renderer, camera, controls, scene, structures: new THREE.Group(), plan: new THREE.Group(), ready: false };
  scene.add(v.structures, v.plan);
  v.tool = makeTool();
  scene.add(v.tool.group);
  new ResizeObserver(() => resize(v)).observe(host);
  resize(v);
  return v;
}

function resize(v) {
  const host = $("scene-view");
  const w = Math.max(1, host.clientWidth), h = Math.max(1, host.clientHeight);
  v.renderer.setSize(w, h, true);
  v.camera.aspect = w / h;
  v.camera.updateProjectionMatrix();
  queueRender();
}

function clear(group) {
  for (const child of [...group.children]) {
    group.remove(child);
    child.traverse((o) => { if (o.geometry) o.geometry.dispose(); if (o.material) o.material.dispose(); });
  }
}

async function buildScene(msg) {
  await loadThree();
  if (!view) view = createView();
  $("scene-message").hidden = true;
  $("scene-title").textContent = msg.title || "";
  clear(view.structures);
  clear(view.plan);
  const bounds = new THREE.Box3();
  const legend = [];
  let triangles = 0;
  for (const m of msg.meshes) {
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(decode(m.vertices, Float32Array), 3));
    geometry.setIndex(new THREE.BufferAttribute(decode(m.faces, Uint32Array), 1));
    geometry.computeVertexNormals();
    geometry.computeBoundingBox();
    bounds.union(geometry.boundingBox);
    const translucent = m.opacity < 1;
    const material = new THREE.MeshPhongMaterial({
      color: m.color, opacity: m.opacity, transparent: translucent, depthWrite: !translucent,
      side: THREE.DoubleSide, shininess: 40, specular: 0x333333,
    });
    const mesh = new THREE.Mesh(geometry, material);
    mesh.name = m.name;
    mesh.renderOrder = translucent ? 2 : 1;
    view.structures.add(mesh);
    triangles += m.n_faces;
    legend.push([m.name, m.color]);
  }
  const target = new THREE.Vector3(...msg.target);
  // the target and the tip are drawn over everything: never hidden inside a structure
  const marker = new THREE.Mesh(new THREE.SphereGeometry(msg.target_radius, 32, 16),
    new THREE.MeshBasicMaterial({ color: COLOURS.target, depthTest: false, transparent: true, opacity: 0.95 }));
  marker.position.copy(target);
  marker.renderOrder = 10;
  view.plan.add(marker);
  bounds.expandByPoint(target);
  legend.push(["target", COLOURS.target]);
  if (msg.entry) {
    const entry = new THREE.Vector3(...msg.entry);
    view.plan.add(rod(entry, target, 0.6, COLOURS.trajectory, 0.75));
    const dot = new THREE.Mesh(new THREE.SphereGeometry(1.4, 20, 10), new THREE.MeshBasicMaterial({ color: COLOURS.trajectory }));
    dot.position.copy(entry);
    view.plan.add(dot);
    bounds.expandByPoint(entry);
    legend.push(["planned trajectory", COLOURS.trajectory]);
  }
  view.toolLength = msg.tool_length;
  view.target = target;
  legend.push(["tool", COLOURS.tool]);
  $("nav-legend").replaceChildren(...legend.map(([name, colour]) => {
    const swatch = document.createElement("i");
    swatch.style.background = colour;
    const item = document.createElement("span");
    item.append(swatch, name);
    return item;
  }));
  frame(bounds, msg.entry && new THREE.Vector3(...msg.entry), target);
  view.ready = true;
  stats.scenes += 1;
  stats.meshes = msg.meshes.length;
  stats.triangles = triangles;
  queueRender();
}

function rod(from, to, radius, colour, opacity) {
  const length = from.distanceTo(to);
  const geometry = new THREE.CylinderGeometry(radius, radius, length, 16, 1, true);
  const material = new THREE.MeshPhongMaterial({ color: colour, transparent: opacity < 1, opacity, emissive: 0x0b3040 });
  const mesh = new THREE.Mesh(geometry, material);
  mesh.position.copy(from).add(to).multiplyScalar(0.5);
  mesh.quaternion.setFromUnitVectors(new THREE.Vector3(0, 1, 0), to.clone().sub(from).normalize());
  return mesh;
}

function frame(bounds, entry, target) {
  const sphere = bounds.getBoundingSphere(new THREE.Sphere());
  const radius = Math.max(sphere.radius, 10);
  const fov = (view.camera.fov * Math.PI) / 180;
  const distance = (0.85 * radius) / Math.tan(fov / 2);  // the bounding sphere is generous
  const dir = new THREE.Vector3(...VIEW_DIRECTION).normalize();
  if (entry) {
    // see the planned trajectory from the side (its depth is what the surgeon cannot see)
    const path = target.clone().sub(entry).normalize();
    const side = dir.clone().addScaledVector(path, -dir.dot(path));
    if (side.length() > 0.2) dir.copy(side.normalize()).addScaledVector(path, -0.25).normalize();
  }
  view.camera.position.copy(sphere.center).addScaledVector(dir, distance);
  view.camera.near = Math.max(0.5, distance - radius * 3);
  view.camera.far = distance + radius * 3;
  view.camera.updateProjectionMatrix();
  view.controls.target.copy(sphere.center);
  view.controls.update();
}

// ------------------------------------------------------------------ tool
function makeTool() {
  const group = new THREE.Group();
  group.visible = false;
  const shaft = new THREE.Mesh(new THREE.CylinderGeometry(1, 1, 1, 20),
    new THREE.MeshPhongMaterial({ color: COLOURS.tool, shininess: 90, specular: 0x888888 }));
  const tip = new THREE.Mesh(new THREE.SphereGeometry(1.8, 24, 12),
    new THREE.MeshBasicMaterial({ color: COLOURS.ok, depthTest: false, transparent: true }));
  tip.renderOrder = 11;
  const guide = new THREE.Line(new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(), new THREE.Vector3(0, 0, 1)]),
    new THREE.LineDashedMaterial({ color: COLOURS.guide, dashSize: 2, gapSize: 1.5 }));
  group.add(shaft, tip, guide);
  return { group, shaft, tip, guide };
}

const UP = () => new THREE.Vector3(0, 1, 0);
function placeTool(msg) {
  const t = view.tool;
  const tip = new THREE.Vector3(...msg.tip);
  const axis = new THREE.Vector3(...msg.axis).normalize();
  t.shaft.scale.set(1, view.toolLength, 1);
  t.shaft.position.copy(tip).addScaledVector(axis, view.toolLength / 2);
  t.shaft.quaternion.setFromUnitVectors(UP(), axis);
  t.tip.position.copy(tip);
  const warned = msg.warnings.length > 0;
  t.tip.material.color.set(warned ? COLOURS.warn : COLOURS.ok);
  t.shaft.material.color.set(warned ? "#f0a8a3" : COLOURS.tool);
  const positions = t.guide.geometry.attributes.position;
  positions.setXYZ(0, tip.x, tip.y, tip.z);
  positions.setXYZ(1, view.target.x, view.target.y, view.target.z);
  positions.needsUpdate = true;
  t.guide.geometry.computeBoundingSphere();
  t.guide.computeLineDistances();
  t.group.visible = true;
}

// ------------------------------------------------------------------ numbers
const mm = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(1)} mm`);
function showNumbers(msg) {
  $("nav-target").textContent = mm(msg.target_distance);
  $("nav-angle").textContent = msg.angle === null ? "–" : `${msg.angle.toFixed(1)}°`;
  $("nav-tre").textContent = mm(msg.tre);
  const entries = Object.entries(msg.distances).sort((a, b) => a[1] - b[1]);
  const nearest = $("nav-nearest");
  if (entries.length) {
    nearest.textContent = `${entries[0][0]} ${mm(entries[0][1])}`;
    nearest.className = entries[0][1] <= 0 ? "bad" : (msg.warnings.length ? "warn" : "good");
  } else {
    nearest.textContent = "–";
    nearest.className = "";
  }
  const margin = msg.tre === null ? 0 : msg.tre;
  $("nav-distances").replaceChildren(...entries.map(([name, d]) => {
    const li = document.createElement("li");
    li.className = d <= 0 ? "bad" : (d <= 2 * margin ? "warn" : "");
    const label = document.createElement("span");
    label.textContent = name;
    const value = document.createElement("b");
    value.textContent = mm(d);
    li.append(label, value);
    return li;
  }));
  const warnings = $("nav-warnings");
  if (msg.warnings.length) {
    warnings.replaceChildren(...msg.warnings.map((w) => {
      const li = document.createElement("li");
      li.className = "warning";
      li.textContent = w;
      return li;
    }));
  } else {
    const li = document.createElement("li");
    li.className = "clear";
    li.textContent = "No warning.";
    warnings.replaceChildren(li);
  }
  $("nav-updates").textContent = String(stats.toolUpdates);
  const latency = Date.now() - msg.published * 1000;
  stats.latencies.push(latency);
  if (stats.latencies.length > 200) stats.latencies.shift();
  const recent = stats.latencies.slice(-30).sort((a, b) => a - b);
  $("nav-latency").textContent = `${recent[Math.floor(recent.length / 2)].toFixed(0)} ms`;
}

// ------------------------------------------------------------------ rendering (on demand)
function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(render);
}

// The numbers follow the tool even when the 3D view cannot be drawn (no WebGL, no three.js).
function render() {
  renderQueued = false;
  const ready = Boolean(view && view.ready);
  const tool = pendingTool;
  if (tool && (ready || stats.error)) {
    pendingTool = null;
    stats.toolUpdates += 1;
    stats.lastTip = tool.tip;
    showNumbers(tool);
    if (ready) placeTool(tool);
  }
  followFrames();
  if (!ready) return;
  const r = view.renderer;
  r.setScissorTest(false);
  r.setViewport(0, 0, r.domElement.clientWidth, r.domElement.clientHeight);
  r.render(view.scene, view.camera);
  drawAxes(view);
  stats.renders += 1;
}

// ------------------------------------------------------------------ orientation (patient axes, LPS)
function makeAxes() {
  const scene = new THREE.Scene();
  const axes = [["L", [1, 0, 0], "#ff7b72"], ["P", [0, 1, 0], "#7ee787"], ["S", [0, 0, 1], "#79c0ff"]];
  for (const [letter, direction, colour] of axes) {
    const dir = new THREE.Vector3(...direction);
    scene.add(new THREE.ArrowHelper(dir, new THREE.Vector3(), 0.8, colour, 0.22, 0.12));
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 64;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = colour;
    ctx.font = "bold 44px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(letter, 32, 34);
    const label = new THREE.Sprite(new THREE.SpriteMaterial({ map: new THREE.CanvasTexture(canvas), depthTest: false }));
    label.position.copy(dir).multiplyScalar(1.1);
    label.scale.setScalar(0.42);
    scene.add(label);
  }
  const camera = new THREE.OrthographicCamera(-1.25, 1.25, 1.25, -1.25, 0.1, 10);
  return { scene, camera };
}

function drawAxes(v) {
  const size = 120;
  const r = v.renderer;
  const axes = v.axes || (v.axes = makeAxes());
  // same orientation as the main camera, looking at the origin
  axes.camera.position.copy(v.camera.position).sub(v.controls.target).setLength(4);
  axes.camera.quaternion.copy(v.camera.quaternion);
  r.autoClear = false;
  r.clearDepth();
  r.setScissorTest(true);
  r.setScissor(8, 8, size, size);
  r.setViewport(8, 8, size, size);
  r.render(axes.scene, axes.camera);
  r.setScissorTest(false);
  r.autoClear = true;
}
