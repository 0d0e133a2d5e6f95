// The ask-a-question page: POST /v1/classify, POST /v1/explain. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
let lastText = "";
let shownVersion = "";

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function call(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.join("; ") : data.detail;
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  return data;
}

function percent(p) {
  return `${(100 * p).toFixed(1)} %`;
}

async function ask(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  showError("");
  $("ask").disabled = true;
  $("why").hidden = true;
  try {
    const answer = await call("/v1/classify", { id: "page", text });
    lastText = text;
    $("label").textContent = answer.label;
    $("confidence").textContent = percent(answer.confidence);
    $("low").hidden = !answer.low_confidence;
    const bars = $("bars");
    bars.replaceChildren(...answer.top_k.map((c) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = c.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = percent(c.probability).replace(" ", "");
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", `${c.label} ${percent(c.probability)}`);
      const value = document.createElement("span");
      value.textContent = percent(c.probability);
      li.append(name, bar, value);
      return li;
    }));
    if (answer.model_version !== shownVersion) showModel();  // hot-reloaded meanwhile
    $("answer").hidden = false;
    $("explain").disabled = false;
  } catch (error) {
    showError(error.message);
  } finally {
    $("ask").disabled = false;
  }
}

function highlight(text, weights) {
  // Marks every occurrence of an explained word; green pushed toward the class, red away.
  const byWord = new Map(weights.map((w) => [w.word, w.weight]));
  const words = [...byWord.keys()].sort((a, b) => b.length - a.length)
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const out = document.createDocumentFragment();
  if (!words.length) {
    out.append(text);
    return out;
  }
  const pattern = new RegExp(`(${words.join("|")})`, "g");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    const weight = byWord.get(match[0]);
    mark.className = weight >= 0 ? "push" : "pull";
    mark.title = `weight ${weight.toFixed(4)}`;
    mark.textContent = match[0];
    out.append(mark);
    last = match.index + match[0].length;
  }
  out.append(text.slice(last));
  return out;
}

async function explain() {
  if (!lastText) return;
  showError("");
  $("explain").disabled = true;
  try {
    const why = await call("/v1/explain", { id: "page", text: lastText, num_features: 10 });
    $("highlighted").replaceChildren(highlight(lastText, why.weights));
    $("weights").replaceChildren(...why.weights.map((w) => {
      const li = document.createElement("li");
      li.textContent = `${w.word}  ${w.weight >= 0 ? "+" : ""}${w.weight.toFixed(4)}`;
      return li;
    }));
    $("why").hidden = false;
  } catch (error) {
    showError(error.message);
  } finally {
    $("explain").disabled = false;
  }
}

async function showModel() {
  try {
    const response = await fetch("/v1/model");
    if (!response.ok) return;
    const model = await response.json();
    shownVersion = model.version;
    const accuracy = model.held_out.accuracy;
    $("model").textContent = `Model ${model.version} · ${model.labels.length} classes` +
      (accuracy ? ` · held-out accuracy ${percent(accuracy)}` : "");
  } catch (_) { /* the page still works without it */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask-form").addEventListener("submit", ask);
  $("explain").addEventListener("click", explain);
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) ask(event);
  });
  showModel();
});
