"""The report of one size: a Markdown file, a PNG of latency CDFs and the raw numbers as JSON.

Rendering the Markdown is pure (``render``); ``write`` puts the three files in place and makes
``latest.md`` a copy of the newest report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scenario import ScenarioResult
from bench.stats import Distribution, SideSummary

MB = 1024 * 1024
WRITE_TARGET = 8  # mutating requests per successful StepRun, cleanup included
RSS_TARGET_MB = 250
CONTROLLER = {"steprun": "operator", "job": "job controller"}
CONTROLLER_PROCESS = {"steprun": "operator", "job": "kube-controller-manager"}


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _ratio(steprun: float | None, job: float | None) -> str:
    if steprun is None or job is None or math.isnan(steprun) or math.isnan(job) or job == 0:
        return "n/a"
    return f"{steprun / job:.2f}"


def _legs(s: SideSummary) -> str:
    legs = (s.pod_to_scheduled, s.scheduled_to_running, s.running_to_finished)
    return " / ".join(_num(leg.p50) for leg in legs)


def _dist(d: Distribution) -> str:
    return f"{_num(d.p50)} / {_num(d.p90)} / {_num(d.p99)} / {_num(d.max)}"


def writes_per_step(result: ScenarioResult, side: str, actor: str | None = None) -> float:
    """Successful mutating requests per step of a side (all clients, or one), from the audit."""
    total = sum(
        int(row["ok"])
        for row in result.audit_rows
        if row["side"] == side and (actor is None or row["actor"] == actor)
    )
    return total / result.spec.size if result.spec.size else math.nan


def operator_writes_per_success(result: ScenarioResult) -> float:
    """The operator's mutating requests per successful StepRun: the audit when it logs
    StepRun writes, the operator's own request counter otherwise."""
    succeeded = result.summaries["steprun"].succeeded
    if not succeeded:
        return math.nan
    if result.audit_complete:
        ok = sum(
            int(row["ok"])
            for row in result.audit_rows
            if row["side"] == "steprun" and row["actor"] == "operator"
        )
        return ok / succeeded
    own = sum(n for verb, n in result.operator_requests.items() if verb != "get")
    return own / succeeded if result.operator_requests else math.nan


def _usage(result: ScenarioResult, name: str) -> tuple[float, float]:
    usage = result.usage.get(name)
    if usage is None:
        return math.nan, math.nan
    return usage.cpu_seconds, usage.peak_rss_bytes / MB


@dataclass(frozen=True)
class Verdict:
    target: str
    met: bool | None  # None: not measured in this run
    evidence: str


def _label(result: ScenarioResult) -> str:
    where = "" if result.spec.nodes == "kwok" else f" real kubelet, {result.spec.size}"
    return f"{result.spec.rate_label}{where}"


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def verdicts(results: Sequence[ScenarioResult]) -> list[Verdict]:
    """The project's targets, checked against every scenario of one size (the real-kubelet set
    included: a target missed at low load is missed)."""
    scale = list(results)
    out: list[Verdict] = []

    def each(check: Any, text: Any) -> tuple[bool | None, str]:
        marks = [check(r) for r in scale]
        known = [m for m in marks if m is not None]
        met = all(known) if known else None
        return met, "; ".join(f"{_label(r)}: {text(r)}" for r in scale)

    def sr(r: ScenarioResult) -> SideSummary:
        return r.summaries["steprun"]

    def jb(r: ScenarioResult) -> SideSummary:
        return r.summaries["job"]

    def le(a: float, b: float) -> bool | None:
        return None if math.isnan(a) or math.isnan(b) else a <= b

    met, text = each(
        lambda r: le(sr(r).pod_creation.p99, jb(r).pod_creation.p99),
        lambda r: f"{_num(sr(r).pod_creation.p99)} s vs {_num(jb(r).pod_creation.p99)} s",
    )
    out.append(Verdict("Pod-creation latency p99 no worse than the Job controller", met, text))
    met, text = each(
        lambda r: le(sr(r).drain_seconds, jb(r).drain_seconds),
        lambda r: f"{_num(sr(r).drain_seconds, 1)} s vs {_num(jb(r).drain_seconds, 1)} s",
    )
    out.append(Verdict("Drain time no worse than the Job controller", met, text))
    met, text = each(
        lambda r: (
            None
            if math.isnan(sr(r).owner_terminal.p50) or math.isnan(jb(r).owner_terminal.p50)
            else sr(r).owner_terminal.p50 < jb(r).owner_terminal.p50
        ),
        lambda r: f"{_num(sr(r).owner_terminal.p50)} s vs {_num(jb(r).owner_terminal.p50)} s",
    )
    out.append(Verdict("Owner-terminal latency p50 below the Job controller's", met, text))
    met, text = each(
        lambda r: (
            None
            if math.isnan(operator_writes_per_success(r))
            else operator_writes_per_success(r) <= WRITE_TARGET
        ),
        lambda r: f"{_num(operator_writes_per_success(r), 2)}",
    )
    out.append(
        Verdict(
            f"At most {WRITE_TARGET} mutating API requests per successful StepRun "
            "(context, secrets and cleanup included)",
            met,
            text,
        )
    )
    met, text = each(
        lambda r: not r.errors and sr(r).succeeded == r.spec.size,
        lambda r: f"{sr(r).succeeded}/{r.spec.size} succeeded, {len(r.errors)} error(s)",
    )
    out.append(Verdict("Every StepRun completes, zero errors", met, text))
    met, text = each(
        lambda r: (
            None
            if math.isnan(_usage(r, "operator")[1])
            else _usage(r, "operator")[1] < RSS_TARGET_MB
        ),
        lambda r: f"{_num(_usage(r, 'operator')[1], 0)} MB",
    )
    out.append(Verdict(f"Operator peak RSS under {RSS_TARGET_MB} MB", met, text))
    return out


def _scenario_table(result: ScenarioResult) -> list[str]:
    s, j = result.summaries["steprun"], result.summaries["job"]
    sr_cpu, sr_rss = _usage(result, "operator")
    job_cpu, job_rss = _usage(result, "kube-controller-manager")
    sr_writes = writes_per_step(result, "steprun")
    job_writes = writes_per_step(result, "job")
    sr_ctl = writes_per_step(result, "steprun", CONTROLLER["steprun"])
    job_ctl = writes_per_step(result, "job", CONTROLLER["job"])
    rows = [
        (
            "steps succeeded / failed / unfinished",
            f"{s.succeeded} / {s.failed} / {s.unfinished}",
            f"{j.succeeded} / {j.failed} / {j.unfinished}",
            "n/a",
        ),
        (
            "create → Pod created, p50 / p90 / p99 / max (s)",
            _dist(s.pod_creation),
            _dist(j.pod_creation),
            _ratio(s.pod_creation.p99, j.pod_creation.p99) + " (p99)",
        ),
        (
            "Pod terminal → owner terminal, p50 / p90 / p99 / max (s)",
            _dist(s.owner_terminal),
            _dist(j.owner_terminal),
            _ratio(s.owner_terminal.p50, j.owner_terminal.p50) + " (p50)",
        ),
        (
            "create → owner terminal, p50 / p90 / p99 / max (s)",
            _dist(s.end_to_end),
            _dist(j.end_to_end),
            _ratio(s.end_to_end.p50, j.end_to_end.p50) + " (p50)",
        ),
        (
            "… of which Pod created → scheduled → running → finished, p50 (s)",
            _legs(s),
            _legs(j),
            "n/a",
        ),
        (
            "drain: first submit → last terminal (s)",
            _num(s.drain_seconds, 1),
            _num(j.drain_seconds, 1),
            _ratio(s.drain_seconds, j.drain_seconds),
        ),
        (
            "tail: last submit → last terminal (s)",
            _num(s.tail_seconds, 1),
            _num(j.tail_seconds, 1),
            _ratio(s.tail_seconds, j.tail_seconds),
        ),
        (
            "throughput (steps/s)",
            _num(s.throughput_per_second, 1),
            _num(j.throughput_per_second, 1),
            _ratio(s.throughput_per_second, j.throughput_per_second),
        ),
    ]
    if result.audit_complete:
        rows += [
            (
                "mutating API requests per step, all clients",
                _num(sr_writes, 2),
                _num(job_writes, 2),
                _ratio(sr_writes, job_writes),
            ),
            (
                "… by the controller (operator / Job controller)",
                _num(sr_ctl, 2),
                _num(job_ctl, 2),
                _ratio(sr_ctl, job_ctl),
            ),
        ]
    rows += [
        (
            "controller CPU seconds (operator / whole controller-manager)",
            _num(sr_cpu, 1),
            _num(job_cpu, 1),
            _ratio(sr_cpu, job_cpu),
        ),
        (
            "controller peak RSS MB (operator / whole controller-manager)",
            _num(sr_rss, 0),
            _num(job_rss, 0),
            _ratio(sr_rss, job_rss),
        ),
        ("extra Pods (beyond one per step)", str(s.extra_pods), str(j.extra_pods), "n/a"),
    ]
    lines = ["| | StepRun | Job | StepRun/Job |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


def _writes_table(result: ScenarioResult) -> list[str]:
    size = result.spec.size
    if result.audit_complete:
        lines = [
            "Mutating requests per step from the audit log (failed ones in parentheses):",
            "",
            "| side | client | resource | verb | per step |",
            "|---|---|---|---|---:|",
        ]
        for row in result.audit_rows:
            failed = f" ({row['failed'] / size:.2f})" if row["failed"] else ""
            lines.append(
                f"| {row['side']} | {row['actor']} | {row['resource']} | {row['verb']} "
                f"| {row['ok'] / size:.2f}{failed} |"
            )
        return lines
    lines = [
        "The API server's audit policy in effect logs only Pod create/delete (it predates the "
        "policy in hack/cluster-up.sh; the API server reads it at start). Writes per step below "
        "come from the operator's own request counter and, cluster-wide and unattributed, from "
        "`apiserver_request_total` (other clients of the cluster included).",
        "",
    ]
    if result.operator_requests:
        own = ", ".join(
            f"{verb.upper()} {n / size:.2f}" for verb, n in sorted(result.operator_requests.items())
        )
        lines += [f"Operator requests per step (its own counter): {own}.", ""]
    if result.apiserver_writes:
        lines += ["| resource | verb | per step (both sides, cluster-wide) |", "|---|---|---:|"]
        for key, n in result.apiserver_writes.items():
            resource, verb = key.split(" ")
            lines.append(f"| {resource} | {verb} | {n / size:.2f} |")
    pods = [r for r in result.audit_rows if r["resource"] == "pods"]
    if pods:
        lines += ["", "Pod creates and deletes from the audit log:", ""]
        lines += ["| side | client | verb | per step |", "|---|---|---|---:|"]
        for row in pods:
            lines.append(
                f"| {row['side']} | {row['actor']} | {row['verb']} | {row['ok'] / size:.2f} |"
            )
    return lines


def _usage_table(result: ScenarioResult) -> list[str]:
    lines = ["| process | CPU seconds | peak RSS MB (sampled) |", "|---|---:|---:|"]
    for name, usage in result.usage.items():
        lines.append(f"| {name} | {usage.cpu_seconds:.1f} | {usage.peak_rss_bytes / MB:.0f} |")
    return lines


def _hotspots(result: ScenarioResult) -> list[str]:
    if not result.hotspots:
        return []
    samples = result.hotspots["samples"] or 1
    lines = [
        f"Operator profile ({result.hotspots['samples']} samples at 100 Hz, py-spy):",
        "",
        "| own time | frame |",
        "|---:|---|",
    ]
    for frame, n in result.hotspots["self"][:10]:
        lines.append(f"| {100 * n / samples:.1f}% | `{frame}` |")
    lines += ["", "| on stack | frame |", "|---:|---|"]
    for frame, n in result.hotspots["inclusive"][:15]:
        lines.append(f"| {100 * n / samples:.1f}% | `{frame}` |")
    return lines


def render(
    size: int,
    results: Sequence[ScenarioResult],
    machine: dict[str, Any],
    settings: dict[str, Any],
    plot_name: str | None,
) -> str:
    lines = [f"# StepRun vs Job: {size} steps per side", ""]
    started = results[0].started_at if results else "n/a"
    lines += [f"Run started {started} (UTC). How it works: `docs/benchmark.md`.", ""]
    lines += ["## Targets", "", "| target | result | measured (StepRun vs Job) |", "|---|---|---|"]
    for verdict in verdicts(results):
        lines.append(f"| {verdict.target} | {_mark(verdict.met)} | {verdict.evidence} |")
    lines.append("")
    if plot_name:
        lines += [f"![latency CDFs]({plot_name})", ""]
    for result in results:
        where = "kwok fake nodes" if result.spec.nodes == "kwok" else "the real kubelet"
        lines += [
            f"## {result.spec.size} per side at {result.spec.rate_label}, on {where}",
            "",
            f"Namespaces `{result.namespaces['steprun']}` and `{result.namespaces['job']}`; "
            f"submitted in {_num(result.submission_seconds, 1)} s; "
            f"{result.watch_events} watch events; cleanup {_num(result.cleanup_seconds, 0)} s.",
            "",
            *_scenario_table(result),
            "",
            *_writes_table(result),
            "",
            *_usage_table(result),
            "",
        ]
        if result.errors:
            lines += ["Errors:", "", *[f"- {e}" for e in result.errors[:30]], ""]
        if hot := _hotspots(result):
            lines += [*hot, ""]
    lines += ["## Machine and versions", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", "## Settings", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines.append("")
    return "\n".join(lines)


def plot(results: Sequence[ScenarioResult], path: Path) -> None:
    """CDFs of both latencies, one column per scenario, StepRun and Job on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, len(results))
    figure, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 6.5), squeeze=False)
    metrics = (
        ("pod_creation", "create → Pod created (s)"),
        ("owner_terminal", "Pod → owner terminal (s)"),
    )
    for column, result in enumerate(results):
        for row, (metric, label) in enumerate(metrics):
            ax = axes[row][column]
            for side, style in (("steprun", "-"), ("job", "--")):
                values = result.latencies.get(side, {}).get(metric, [])
                if values:
                    ys = [(i + 1) / len(values) for i in range(len(values))]
                    ax.step(values, ys, style, where="post", label=side)
            ax.set_xlabel(label)
            ax.set_ylabel("fraction of steps")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right")
            where = "kwok" if result.spec.nodes == "kwok" else "real kubelet"
            ax.set_title(f"{result.spec.size} at {result.spec.rate_label} ({where})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_json(
    results: Iterable[ScenarioResult], machine: dict[str, Any], settings: dict[str, Any]
) -> str:
    document = {"machine": machine, "settings": settings, "scenarios": _plain(list(results))}
    return json.dumps(document, indent=1)


def write(
    out_dir: Path,
    stem: str,
    size: int,
    results: Sequence[ScenarioResult],
    machine: dict[str, Any],
    settings: dict[str, Any],
) -> Path:
    """Writes <stem>.md, <stem>.png and <stem>.json; copies the report to latest.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    plot(results, png)
    report = out_dir / f"{stem}.md"
    report.write_text(render(size, results, machine, settings, png.name))
    (out_dir / f"{stem}.json").write_text(to_json(results, machine, settings))
    shutil.copyfile(report, out_dir / "latest.md")
    return report
