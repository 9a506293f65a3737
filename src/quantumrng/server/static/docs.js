// Interactive API docs: renders /openapi.json and lets you try each GET.
// Self-contained (no CDN); builds the DOM with textContent only.
"use strict";

const MAX_SHOWN = 100000; // characters of a body shown at most
const SHOWN_HEADERS = ["content-type", "content-length", "cache-control", "retry-after",
  "x-qrng-mode", "x-qrng-source", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function input(param) {
  const schema = param.schema || {};
  let field;
  if (schema.enum) {
    field = el("select", { name: param.name });
    for (const v of schema.enum) field.append(el("option", { value: v }, v));
    if (schema.default !== undefined) field.value = schema.default;
  } else {
    field = el("input", { name: param.name, type: "text", spellcheck: "false" });
    if (schema.default !== undefined) field.placeholder = String(schema.default);
  }
  if (param.required) field.required = true;
  return field;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

async function tryIt(path, form, out) {
  let url = path;
  const query = new URLSearchParams();
  for (const field of form.querySelectorAll("[name]")) {
    const value = field.value.trim();
    if (field.dataset.in === "path") url = url.replace(`{${field.name}}`, encodeURIComponent(value));
    else if (value !== "") query.set(field.name, value);
  }
  const qs = query.toString();
  const target = url.replace(/^\//, "") + (qs ? `?${qs}` : "");
  const headers = {};
  const key = document.getElementById("apikey").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  out.replaceChildren(el("p", {}, `GET ${url}${qs ? "?" + qs : ""} …`));
  let response;
  try {
    response = await fetch(target, { headers, cache: "no-store" });
  } catch (err) {
    out.replaceChildren(el("p", { class: "status-err" }, `request failed: ${err}`));
    return;
  }
  const status = el("p", { class: response.ok ? "status-ok" : "status-err" },
    `${response.status} ${response.statusText}`);
  const head = SHOWN_HEADERS.filter((h) => response.headers.has(h))
    .map((h) => `${h}: ${response.headers.get(h)}`).join("\n");
  let body;
  const type = response.headers.get("content-type") || "";
  if (type.startsWith("application/json")) {
    const text = JSON.stringify(await response.json(), null, 2);
    body = text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) + "\n…" : text;
  } else if (type.startsWith("application/octet-stream")) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    body = `${bytes.length} bytes; the first 64:\n${hex(bytes.slice(0, 64))}`;
  } else {
    const text = await response.text();
    body = text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) + "\n…" : text;
  }
  out.replaceChildren(status, el("pre", {}, head), el("pre", {}, body));
}

function operation(path, method, op) {
  const form = el("form", {});
  for (const param of op.parameters || []) {
    const field = input(param);
    field.dataset.in = param.in;
    const label = el("label", {}, param.name + (param.required ? " *" : ""));
    form.append(label, field);
    if (param.description) form.append(el("span", { class: "help" }, param.description));
  }
  const out = el("div", {});
  form.append(el("button", { type: "submit" }, "Try it"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    tryIt(path, form, out);
  });
  const summary = el("summary", {}, el("span", { class: "method" }, method.toUpperCase()),
    el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || ""));
  const details = el("details", {}, summary);
  if (op.description) details.append(el("p", {}, op.description));
  details.append(form, out);
  return details;
}

async function main() {
  const root = document.getElementById("operations");
  let spec;
  try {
    spec = await (await fetch("openapi.json")).json();
  } catch (err) {
    root.replaceChildren(el("p", { class: "status-err" }, `cannot load openapi.json: ${err}`));
    return;
  }
  document.getElementById("version").textContent = spec.info.version;
  document.getElementById("description").textContent = spec.info.description;
  const groups = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operation(path, method, op));
    }
  }
  root.replaceChildren();
  for (const [tag, ops] of groups) root.append(el("h2", {}, tag), ...ops);
}

main();
