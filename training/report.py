"""The human-readable ``report.md`` of a bundle, and the machine facts it cites."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from training.evaluate import format_confusion_matrix

REPORT_FILE = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
HISTORY_PNG = "history.png"
CONFUSION_TXT = "confusion_matrix.txt"


def machine_facts() -> dict[str, str]:
    """Where the run happened: CPU architecture and count, OS, Python and library versions."""
    from importlib.metadata import PackageNotFoundError, version

    facts = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "python": sys.version.split()[0],
    }
    for package in ("tensorflow-cpu", "tensorflow", "keras", "scikit-learn", "numpy"):
        try:
            facts[package] = version(package)
        except PackageNotFoundError:
            continue
    return facts


def _pct(value: float) -> str:
    return f"{value:.4f}"


def render_report(
    *,
    title: str,
    metrics: Mapping[str, Any],
    data: Mapping[str, Any],
    configuration: Mapping[str, Any],
    notes: Sequence[str] = (),
    command: str | None = None,
) -> str:
    """Markdown report tying the run together.

    Args:
        title: Heading, e.g. ``bbc: bilstm``.
        metrics: The bundle's ``metrics.json`` content: ``accuracy``, ``macro_f1``, ``n``,
            ``labels``, ``confusion_matrix``, ``classification_report_text``, ``history``,
            ``train_seconds``, ``epochs_run``, ``best_epoch``, ``baseline`` (may be absent),
            ``duplicates`` and ``machine``.
        data: ``dataset``, ``source``, ``sha256``, ``split`` (how the test rows were chosen),
            ``rows`` (``train``/``validation``/``test`` counts) and ``classes``.
        configuration: ``text``, ``sequence``, ``network``, ``training`` settings (JSON-able).
        notes: Caveats to print near the top (e.g. training on a subset).
        command: The command line that produced the run.

    Returns:
        The Markdown text (UTF-8 when written).
    """
    network = configuration.get("network", {})
    rows = data.get("rows", {})
    lines = [f"# Training report: {title}", ""]
    for note in notes:
        lines += [f"> **Note:** {note}", ""]
    lines += [
        "## Results on the held-out test split",
        "",
        "| model | test accuracy | macro-F1 | training time |",
        "| --- | --- | --- | --- |",
        f"| LSTM family: {network.get('architecture', '?')} "
        f"(pooling {network.get('pooling', 'last')}) | {_pct(metrics['accuracy'])} | "
        f"{_pct(metrics['macro_f1'])} | {metrics.get('train_seconds', '?')} s |",
    ]
    baseline = metrics.get("baseline")
    if baseline:
        lines.append(
            f"| baseline: TF-IDF + LinearSVC | {_pct(baseline['accuracy'])} | "
            f"{_pct(baseline['macro_f1'])} | {baseline['train_seconds']} s |"
        )
    lines += [
        "",
        f"Test rows: {metrics['n']}. Early stopping on validation loss kept epoch "
        f"{metrics.get('best_epoch', '?')} of {metrics.get('epochs_run', '?')} run. The test "
        "split was used only for this evaluation.",
        "",
    ]
    if baseline:
        lines += [f"Baseline: {baseline['model']}.", ""]
    embeddings = metrics.get("embeddings")
    if embeddings:
        lines += [
            f"Embedding initialised from {embeddings['source']}"
            f"{' (frozen)' if embeddings.get('frozen') else ''}: {embeddings['covered']} of "
            f"{embeddings['words']} vocabulary words had a vector.",
            "",
        ]
    duplicates = metrics.get("duplicates", {})
    lines += [
        "## Data",
        "",
        f"- dataset: {data.get('dataset')} (`{data.get('source')}`)",
        f"- sha256: `{data.get('sha256')}`",
        f"- split: {data.get('split')}",
        f"- rows: train {rows.get('train')}, validation {rows.get('validation')}, "
        f"test {rows.get('test')}",
        f"- classes ({len(metrics['labels'])}): {data.get('classes')}",
        f"- test texts that also occur in the training rows: {duplicates.get('count', 0)}",
    ]
    lines += [f"  - e.g. `{e}`" for e in duplicates.get("examples", [])[:3]]
    lines += [
        "",
        "## Per-class precision, recall and F1 (LSTM)",
        "",
        "```text",
        str(metrics["classification_report_text"]).rstrip(),
        "```",
        "",
        "## Confusion matrix (rows: true class, columns: predicted)",
        "",
        f"![confusion matrix]({CONFUSION_PNG})",
        "",
        f"As text: [{CONFUSION_TXT}]({CONFUSION_TXT}).",
        "",
        "## Training history",
        "",
        f"![accuracy and loss per epoch]({HISTORY_PNG})",
        "",
        "| epoch | loss | accuracy | val_loss | val_accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    history = metrics.get("history", {})
    for epoch in range(len(history.get("loss", []))):
        cells = [
            f"{history[k][epoch]:.4f}" if k in history else "-"
            for k in ("loss", "accuracy", "val_loss", "val_accuracy")
        ]
        lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    lines += ["", "## Configuration", "", "```json"]
    lines += [json.dumps(configuration, indent=2, sort_keys=True, default=str), "```", ""]
    machine = metrics.get("machine", {})
    lines += ["## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    if command:
        lines += ["", "## Command", "", "```sh", command, "```"]
    return "\n".join(lines) + "\n"


def confusion_text(metrics: Mapping[str, Any]) -> str:
    """The confusion matrix as an aligned text table, with a header line."""
    table = format_confusion_matrix(metrics["confusion_matrix"], metrics["labels"])
    return "rows: true class, columns: predicted class\n" + table + "\n"
