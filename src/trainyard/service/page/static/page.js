// The jobs page of the Trainyard job service: plain DOM, no build step.
// Every value that comes from a job is written with textContent (never innerHTML), links are built
// from encoded ids, and the token lives in sessionStorage and travels only as the Authorization header.
"use strict";

const TOKEN_KEY = "trainyard.token";
const POLL_MS = 1000;
const LIMIT = 100;

const state = { settings: null, timer: null, polls: 0, follow: null, rows: new Map() };
const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const stored = token();
  if (stored) headers.set("Authorization", "Bearer " + stored);
  const response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  if (response.status === 401) throw new Unauthorized();
  return response;
}

async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.error || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function say(text, isError = false) {
  const line = $("status-line");
  line.textContent = text;
  line.classList.toggle("error", isError);
}

// -- the token ----------------------------------------------------------------------------------

function askForToken(message) {
  stopPolling();
  stopFollowing();
  $("jobs-view").hidden = true;
  $("log-view").hidden = true;
  $("token-form").hidden = false;
  $("token-error").textContent = message || "";
  $("forget-token").hidden = !token();
  say("a token is needed");
  $("token-input").focus();
}

function useToken(event) {
  event.preventDefault();
  const given = $("token-input").value.trim();
  $("token-input").value = "";
  if (!given) return;
  sessionStorage.setItem(TOKEN_KEY, given);
  start();
}

function refused() {
  const had = token() !== null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.settings = null;
  askForToken(had ? "the service refused this token" : "");
}

function forgetToken() {
  state.settings = null;
  sessionStorage.removeItem(TOKEN_KEY);
  askForToken("");
}

// -- formatting ---------------------------------------------------------------------------------

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function progressCell(job) {
  const cell = el("td");
  const p = job.progress || {};
  const percent = typeof p.percent === "number" ? p.percent : job.status === "completed" ? 100 : null;
  if (percent !== null) {
    const bar = el("progress");
    bar.max = 100;
    bar.value = percent;
    cell.append(bar, " ", `${percent}%`);
  }
  const parts = [];
  if (job.status === "running" && p.step) parts.push(p.step);
  if (typeof p.steps_done === "number") parts.push(`${p.steps_done} steps done`);
  if (typeof p.trials_done === "number") {
    parts.push(`trials ${p.trials_done}${p.trials_budget ? " of " + p.trials_budget : ""}`);
    if (p.best !== null && p.best !== undefined) parts.push(`best ${p.best}`);
  }
  if (parts.length) cell.append(el("span", (percent !== null ? " · " : "") + parts.join(" · ")));
  if (!cell.childNodes.length) cell.textContent = "–";
  return cell;
}

function runCell(job) {
  const cell = el("td");
  if (!job.run_id) {
    cell.textContent = "–";
    return cell;
  }
  const ui = state.settings && state.settings.mlflow_ui;
  if (ui) {
    const link = el("a", job.run_id.slice(0, 12), "run-link");
    link.href = `${ui}/#/runs/${encodeURIComponent(job.run_id)}`;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.title = `run ${job.run_id} in the MLflow UI`;
    cell.append(link);
  } else {
    cell.append(el("code", job.run_id, "run-id"));
    if (job.tracking_uri) cell.append(el("span", job.tracking_uri, "tracking"));
  }
  return cell;
}

function rowOf(job) {
  const row = el("tr");
  row.dataset.jobId = job.id;
  const name = el("td");
  name.append(el("span", job.name ? `${job.kind} · ${job.name}` : job.kind, "job-name"));
  name.append(el("span", job.id, "job-id"));
  const status = el("td", job.status, `status status-${job.status}`);
  const log = el("td");
  const logLink = el("a", job.status === "running" || job.status === "queued" ? "follow" : "log", "log-link");
  logLink.href = `#log/${encodeURIComponent(job.id)}`;
  log.append(logLink);
  row.append(
    name, status, progressCell(job), el("td", duration(job.duration_s), "duration"),
    el("td", job.message || "", "message"), runCell(job), log,
  );
  return row;
}

// A row is rebuilt only when what it shows changed: links under the pointer stay where they are.
function fingerprint(job) {
  const shown = { ...job, duration_s: job.duration_s === null ? null : job.duration_s.toFixed(1) };
  return JSON.stringify(shown);
}

function render(page) {
  const body = document.querySelector("#jobs tbody");
  const seen = new Set();
  page.jobs.forEach((job, index) => {
    seen.add(job.id);
    const print = fingerprint(job);
    let entry = state.rows.get(job.id);
    if (!entry || entry.print !== print) {
      const row = rowOf(job);
      if (entry) entry.row.replaceWith(row);
      entry = { row, print };
      state.rows.set(job.id, entry);
    }
    if (body.children[index] !== entry.row) body.insertBefore(entry.row, body.children[index] || null);
  });
  for (const [id, entry] of state.rows) {
    if (!seen.has(id)) {
      entry.row.remove();
      state.rows.delete(id);
    }
  }
  $("empty").hidden = page.jobs.length > 0;
  $("count").textContent = `${page.jobs.length} of ${page.total} job(s)`;
}

// -- the list, polled -----------------------------------------------------------------------------

function stopPolling() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
  state.polls += 1; // an answer still on its way is then dropped
}

async function poll() {
  stopPolling();
  const mine = state.polls;
  const query = new URLSearchParams({ limit: String(LIMIT) });
  const status = $("status-filter").value;
  if (status) query.set("status", status);
  try {
    const response = await api(`/jobs?${query}`);
    if (!response.ok) throw new Error(await problem(response));
    const page = await response.json();
    if (mine !== state.polls) return;
    render(page);
    say(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    if (mine !== state.polls) return;
    if (error instanceof Unauthorized) return refused();
    say(`cannot read the jobs: ${error.message}; trying again`, true);
  }
  if (!$("jobs-view").hidden) state.timer = setTimeout(poll, POLL_MS);
}

// -- a log, followed ------------------------------------------------------------------------------

function stopFollowing() {
  if (state.follow) state.follow.abort();
  state.follow = null;
}

async function follow(jobId) {
  stopFollowing();
  const controller = new AbortController();
  state.follow = controller;
  const text = $("log-text");
  const status = $("log-state");
  $("log-job").textContent = jobId;
  text.textContent = "";
  status.textContent = "following the log…";
  const path = `/jobs/${encodeURIComponent(jobId)}`;
  try {
    const response = await api(`${path}/logs?follow=true`, { signal: controller.signal });
    if (!response.ok) {
      status.textContent = await problem(response);
      status.classList.add("error");
      return;
    }
    status.classList.remove("error");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const atEnd = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
      text.append(decoder.decode(value, { stream: true }));
      if (atEnd) text.scrollTop = text.scrollHeight;
    }
    text.append(decoder.decode());
    const job = await (await api(path)).json();
    status.textContent = `the job ended ${job.status}: this is its whole log`;
    status.dataset.ended = job.status;
  } catch (error) {
    if (error.name === "AbortError") return;
    if (error instanceof Unauthorized) return refused();
    status.textContent = `the log stopped: ${error.message}`;
    status.classList.add("error");
  }
}

// -- views ----------------------------------------------------------------------------------------

function route() {
  if (!state.settings) return;
  const match = /^#log\/(.+)$/.exec(location.hash);
  $("token-form").hidden = true;
  $("forget-token").hidden = !token();
  if (match) {
    stopPolling();
    $("jobs-view").hidden = true;
    $("log-view").hidden = false;
    let jobId;
    try {
      jobId = decodeURIComponent(match[1]);
    } catch {
      jobId = match[1];
    }
    follow(jobId);
  } else {
    stopFollowing();
    $("log-view").hidden = true;
    $("jobs-view").hidden = false;
    poll();
  }
}

async function start() {
  try {
    const response = await api("/page/settings");
    if (!response.ok) throw new Error(await problem(response));
    state.settings = await response.json();
  } catch (error) {
    if (error instanceof Unauthorized) return refused();
    say(`cannot reach the service: ${error.message}; trying again`, true);
    setTimeout(start, 2000);
    return;
  }
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", useToken);
  $("forget-token").addEventListener("click", forgetToken);
  $("status-filter").addEventListener("change", () => {
    if (!$("jobs-view").hidden) poll();
  });
  window.addEventListener("hashchange", route);
  start();
});
