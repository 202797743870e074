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

from bench.audit import MUTATING, READS
from bench.panels import glance, panels
from bench.scenario import ScenarioResult
from bench.stats import Distribution, SideSummary, percentile

MB = 1024 * 1024
WRITE_TARGET = 8  # mutating requests per successful StepRun, cleanup included
RSS_TARGET_MB = 250
CONTROLLER = {"steprun": "operator", "job": "job controller", "pod": "bench client"}
ARMS = ("steprun", "job", "pod")
# Which audited clients each process stands for (the controller-manager runs many controllers,
# each with its own identity; the API server serves everyone).
PROCESS_ACTORS: dict[str, tuple[str, ...] | None] = {
    "operator": ("operator",),
    "bench client": ("bench client",),
    "kube-controller-manager": (
        "job controller",
        "garbage collector",
        "namespace controller",
        "pod garbage collector",
        "ttl controller",
        "controller manager",
    ),
    "kube-scheduler": ("scheduler",),
    "kwok": ("kwok",),
    "kube-apiserver": None,
}


def arm_label(result: ScenarioResult, side: str) -> str:
    """Job arms say how the Job controller ran: its default limits are a different result."""
    if side == "job":
        return f"Job ({result.spec.controller_manager} controller-manager)"
    return {"steprun": "StepRun", "pod": "bare Pods"}[side]


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


def writes_per_step(
    result: ScenarioResult, side: str, actor: str | None = None, *, reads: bool = False
) -> float:
    """Successful mutating requests (or reads) per step of a side, all clients or one."""
    verbs = READS if reads else MUTATING
    total = sum(
        int(row["ok"])
        for row in result.audit_rows
        if row["side"] == side and (actor is None or row["actor"] == actor) and row["verb"] in verbs
    )
    return total / result.spec.size if result.spec.size else math.nan


def requests_by(result: ScenarioResult, actors: tuple[str, ...] | None) -> int:
    """Audited requests (reads and writes, every arm) made by these clients; None: everyone."""
    return sum(
        int(row["ok"]) + int(row["failed"])
        for row in result.audit_rows
        if actors is None or row["actor"] in actors
    )


def achieved_rate(result: ScenarioResult) -> float:
    """Creates per second per arm actually reached (the pacer is a ceiling, not a promise)."""
    submitted = sum(s.submitted for s in result.summaries.values())
    arms = len(result.summaries) or 1
    seconds = result.submission_seconds
    return submitted / arms / seconds if seconds and seconds > 0 else math.nan


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
            if row["side"] == "steprun" and row["actor"] == "operator" and row["verb"] in MUTATING
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
    arms = [arm for arm in ARMS if arm in result.summaries]
    sums = {arm: result.summaries[arm] for arm in arms}
    cpu = {arm: _usage(result, CONTROLLER_PROCESS.get(arm, ""))[0] for arm in arms}
    rss = {arm: _usage(result, CONTROLLER_PROCESS.get(arm, ""))[1] for arm in arms}

    def row(label: str, value: Any, digits: int = 3, ratio: bool = True) -> list[str]:
        cells = [value(arm) for arm in arms]
        shown = [c if isinstance(c, str) else _num(c, digits) for c in cells]
        ratios = []
        base = cells[0]
        for other in ("job", "pod"):
            if ratio and other in arms and not isinstance(base, str):
                ratios.append(_ratio(base, cells[arms.index(other)]))
            else:
                ratios.append("")
        return [label, *shown, *ratios]

    def dist(name: str) -> Any:
        return lambda arm: _dist(getattr(sums[arm], name))

    rows = [
        row(
            "steps succeeded / failed / unfinished",
            lambda a: f"{sums[a].succeeded} / {sums[a].failed} / {sums[a].unfinished}",
        ),
        row("create → Pod created, p50 / p90 / p99 / max (s)", dist("pod_creation")),
        row("… p99 (s)", lambda a: sums[a].pod_creation.p99),
        row("Pod terminal → owner terminal, p50 / p90 / p99 / max (s)", dist("owner_terminal")),
        row("create → owner terminal, p50 / p90 / p99 / max (s)", dist("end_to_end")),
        row("… p50 (s)", lambda a: sums[a].end_to_end.p50),
        row(
            "… of which Pod created → scheduled → running → finished, p50 (s)",
            lambda a: _legs(sums[a]),
        ),
        row("drain: first submit → last terminal (s)", lambda a: sums[a].drain_seconds, 1),
        row("throughput (steps/s)", lambda a: sums[a].throughput_per_second, 1),
    ]
    if result.audit_complete:
        rows += [
            row("writes per step, all clients", lambda a: writes_per_step(result, a), 2),
            row("reads per step, all clients", lambda a: writes_per_step(result, a, reads=True), 2),
            row(
                "writes per step by the controller (operator / Job controller / client)",
                lambda a: writes_per_step(result, a, CONTROLLER[a]),
                2,
            ),
            row(
                "reads per step by the controller",
                lambda a: writes_per_step(result, a, CONTROLLER[a], reads=True),
                2,
            ),
        ]
    rows += [
        row(
            "controller CPU ms per step (operator / whole controller-manager)",
            lambda a: 1000 * cpu[a] / result.spec.size if a != "pod" else math.nan,
            1,
        ),
        row("controller peak RSS MB", lambda a: rss[a] if a != "pod" else math.nan, 0),
        row("extra Pods (beyond one per step)", lambda a: str(sums[a].extra_pods), ratio=False),
    ]
    header = ["", *(arm_label(result, arm) for arm in arms), "StepRun/Job", "StepRun/Pods"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _writes_table(result: ScenarioResult) -> list[str]:
    size = result.spec.size
    if result.audit_complete:
        lines = [
            "Requests per step from the audit log, writes and reads (failed ones in parentheses):",
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
    steps = result.spec.size * max(1, len(result.summaries))
    lines = [
        f"CPU per step divides by every arm's steps ({steps}); per request by the audited "
        "requests (reads and writes in the arms' namespaces) that process made, or, for the "
        "API server, that anyone made.",
        "",
        "| process | CPU seconds | CPU ms per step | audited requests | CPU ms per request "
        "| peak RSS MB (sampled) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, usage in result.usage.items():
        requests = requests_by(result, PROCESS_ACTORS.get(name, (name,)))
        per_request = _num(1000 * usage.cpu_seconds / requests, 2) if requests else "n/a"
        lines.append(
            f"| {name} | {usage.cpu_seconds:.1f} | {1000 * usage.cpu_seconds / steps:.2f} "
            f"| {requests} | {per_request} | {usage.peak_rss_bytes / MB:.0f} |"
        )
    return lines


def _timings(result: ScenarioResult) -> list[str]:
    if not result.operator_timings:
        return []
    lines = [
        "Where the time goes inside the operator, from its own histograms (percentiles "
        "interpolated within buckets):",
        "",
        "| | count | mean (s) | p50 (s) | p90 (s) | p99 (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result.operator_timings:
        lines.append(
            f"| {row['what']} | {row['count']} | "
            + " | ".join(_num(row[k], 3) for k in ("mean", "p50", "p90", "p99"))
            + " |"
        )
    return lines


def _hotspots(result: ScenarioResult) -> list[str]:
    if not result.hotspots:
        return []
    samples = result.hotspots["samples"] or 1
    lines = [f"Operator profile ({result.hotspots['samples']} samples at 100 Hz, py-spy):", ""]
    # Samples stand for CPU time: the operator's CPU per StepRun shared out by them.
    cpu_ms = 1000 * _usage(result, "operator")[0] / result.spec.size
    if categories := result.hotspots.get("categories"):
        lines += ["| spent for | share of samples | ≈ CPU ms per StepRun |", "|---|---:|---:|"]
        for name, n in categories:
            share = n / samples
            lines.append(f"| {name} | {100 * share:.1f}% | {_num(cpu_ms * share, 1)} |")
        lines.append("")
    lines += ["| own time | frame |", "|---:|---|"]
    for frame, n in result.hotspots["self"][:10]:
        lines.append(f"| {100 * n / samples:.1f}% | `{frame}` |")
    lines += ["", "| on stack | frame |", "|---:|---|"]
    for frame, n in result.hotspots["inclusive"][:15]:
        lines.append(f"| {100 * n / samples:.1f}% | `{frame}` |")
    return lines


def configuration(result: ScenarioResult) -> str:
    where = "kwok" if result.spec.nodes == "kwok" else "real kubelet"
    return (
        f"{result.spec.size} at {result.spec.rate_label} on {where}, "
        f"{result.spec.controller_manager} controller-manager"
    )


SPREAD_METRICS: tuple[tuple[str, Any, int], ...] = (
    ("create → Pod p50 (s)", lambda r, a: r.summaries[a].pod_creation.p50, 3),
    ("create → Pod p99 (s)", lambda r, a: r.summaries[a].pod_creation.p99, 3),
    ("create → terminal p50 (s)", lambda r, a: r.summaries[a].end_to_end.p50, 3),
    ("create → terminal p99 (s)", lambda r, a: r.summaries[a].end_to_end.p99, 3),
    ("throughput (steps/s)", lambda r, a: r.summaries[a].throughput_per_second, 1),
    ("controller writes per step", lambda r, a: writes_per_step(r, a, CONTROLLER[a]), 2),
    ("controller reads per step", lambda r, a: writes_per_step(r, a, CONTROLLER[a], reads=True), 2),
)


def _spread(values: list[float], digits: int) -> str:
    known = sorted(v for v in values if not math.isnan(v))
    if not known:
        return "n/a"
    middle = percentile(known, 0.5)
    return f"{_num(middle, digits)} ({_num(known[0], digits)}-{_num(known[-1], digits)})"


def spread_table(results: Sequence[ScenarioResult]) -> list[str]:
    """Each configuration's runs: the median and, in parentheses, the smallest and largest."""
    groups: dict[str, list[ScenarioResult]] = {}
    for result in results:
        groups.setdefault(configuration(result), []).append(result)
    lines = []
    for name, runs in groups.items():
        arms = [arm for arm in ARMS if arm in runs[0].summaries]
        rates = [achieved_rate(r) for r in runs]
        lines += [
            f"### {name}: {len(runs)} run(s), median (min-max)",
            "",
            f"Achieved submission rate per arm: {_spread(rates, 1)} steps/s.",
            "",
            "| | " + " | ".join(arm_label(runs[0], arm) for arm in arms) + " |",
            "|---" + "|---:" * len(arms) + "|",
        ]
        for label, metric, digits in SPREAD_METRICS:
            cells = [_spread([metric(r, arm) for r in runs], digits) for arm in arms]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _flags(results: Sequence[ScenarioResult]) -> list[str]:
    seen: dict[str, str] = {}
    for result in results:
        for name, flags in result.controller_flags.items():
            key = (
                f"{name}, {result.spec.controller_manager} mode"
                if name == ("kube-controller-manager")
                else name
            )
            seen.setdefault(key, " ".join(flags) or "(defaults)")
    return [f"- {name}: `{flags}`" for name, flags in seen.items()]


def render(
    size: int,
    results: Sequence[ScenarioResult],
    machine: dict[str, Any],
    settings: dict[str, Any],
    plot_name: str | None,
) -> str:
    lines = [f"# StepRun vs Job vs bare Pods: {size} steps per arm", ""]
    started = results[0].started_at if results else "n/a"
    revision = machine.get("revision", "unknown")
    changes = " WITH LOCAL CHANGES" if machine.get("local_changes") else ""
    lines += [
        f"Run started {started} (UTC) from revision `{revision}`{changes}. "
        "How it works: `docs/benchmark.md`.",
        "",
    ]
    lines += ["## Targets", "", "| target | result | measured (StepRun vs Job) |", "|---|---|---|"]
    for verdict in verdicts(results):
        lines.append(f"| {verdict.target} | {_mark(verdict.met)} | {verdict.evidence} |")
    lines.append("")
    lines += [
        "## create → Pod at a glance",
        "",
        "Per configuration (runs pooled), the StepRun arm against its targets: at most 30 ms "
        "over bare Pods at p50, no later than the Job controller at p50 and p99.",
        "",
        *glance(_pooled(results)),
        "",
    ]
    if plot_name:
        stem = plot_name.removesuffix(".png")
        lines += [
            f"![create → Pod per configuration, arms side by side, targets drawn in]({plot_name})",
            "",
            f"![writes, reads and CPU per step]({stem}-cost.png)",
            "",
            f"![operator RSS against retained StepRuns]({stem}-rss.png)",
            "",
        ]
    lines += ["## Spread over runs", "", *spread_table(results)]
    lines += ["## Controllers' flags", "", *_flags(results), ""]
    for result in results:
        where = "kwok fake nodes" if result.spec.nodes == "kwok" else "the real kubelet"
        lines += [
            f"## {result.spec.size} per arm at {result.spec.rate_label}, on {where}, "
            f"{result.spec.controller_manager} controller-manager, run {result.spec.repeat}",
            "",
            f"Namespaces {', '.join(f'`{ns}`' for ns in result.namespaces.values())}; "
            f"submitted in {_num(result.submission_seconds, 1)} s "
            f"(achieved {_num(achieved_rate(result), 1)} steps/s per arm); "
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
        if timings := _timings(result):
            lines += [*timings, ""]
        if hot := _hotspots(result):
            lines += [*hot, ""]
    lines += ["## Machine and versions", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", "## Settings", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines.append("")
    return "\n".join(lines)


def _pooled(results: Sequence[ScenarioResult]) -> dict[str, list[ScenarioResult]]:
    groups: dict[str, list[ScenarioResult]] = {}
    for result in results:
        groups.setdefault(configuration(result), []).append(result)
    return groups


def plot(results: Sequence[ScenarioResult], path: Path) -> None:
    """Three figures: create → Pod per configuration, one panel each with its arms side by side
    and the targets drawn in (runs of a configuration pooled), writes/reads/CPU per step as
    bars, and the operator's RSS against the StepRuns it retains."""
    import matplotlib

    matplotlib.use("Agg")

    groups = _pooled(results)
    _plot_panels(groups, path)
    _plot_cost(groups, path.with_name(path.stem + "-cost.png"))
    _plot_rss(results, path.with_name(path.stem + "-rss.png"))


def _plot_panels(groups: dict[str, list[ScenarioResult]], path: Path) -> None:
    import matplotlib.pyplot as plt

    shown = panels(groups)
    columns = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False, sharey=True
    )
    colours = {"p50": "tab:blue", "p99": "tab:orange"}
    for index, ax in enumerate(ax for row in axes for ax in row):
        if index >= len(shown):
            ax.axis("off")
            continue
        panel = shown[index]
        runs = groups[panel.configuration]
        arms = list(panel.arms)
        for offset, stat in ((-0.2, "p50"), (0.2, "p99")):
            values = [getattr(panel.arms[arm], stat) for arm in arms]
            ax.bar(
                [i + offset for i in range(len(arms))],
                values,
                width=0.4,
                color=colours[stat],
                label=f"create → Pod {stat}",
            )
        if (target := panel.p50_target) is not None:
            ax.axhline(
                target,
                color=colours["p50"],
                linestyle="--",
                linewidth=1,
                label="StepRun p50 target (bare Pods + 30 ms, ≤ Job)",
            )
        if (target := panel.p99_target) is not None:
            ax.axhline(
                target,
                color=colours["p99"],
                linestyle=":",
                linewidth=1.5,
                label="StepRun p99 target (≤ Job)",
            )
        ax.set_xticks(range(len(arms)), [arm_label(runs[0], arm) for arm in arms], fontsize=7)
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        word = {True: "met", False: "MISSED", None: "not measured"}[panel.met]
        ax.set_title(f"{panel.configuration}\n{word}", fontsize=8)
        if index % columns == 0:
            ax.set_ylabel("create → Pod (s), log scale")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncols=4, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_cost(groups: dict[str, list[ScenarioResult]], path: Path) -> None:
    import matplotlib.pyplot as plt

    labels: list[str] = []
    writes: list[float] = []
    reads: list[float] = []
    cpu: list[float] = []
    for name, runs in groups.items():
        for arm in ARMS:
            if arm not in runs[0].summaries:
                continue
            labels.append(f"{arm_label(runs[0], arm)}\n{name.split(',')[0]}")
            writes.append(
                percentile(sorted(writes_per_step(r, arm, CONTROLLER[arm]) for r in runs), 0.5)
            )
            reads.append(
                percentile(
                    sorted(writes_per_step(r, arm, CONTROLLER[arm], reads=True) for r in runs), 0.5
                )
            )
            process = CONTROLLER_PROCESS.get(arm)
            cpu.append(
                percentile(sorted(1000 * _usage(r, process)[0] / r.spec.size for r in runs), 0.5)
                if process
                else 0.0
            )
    figure, axes = plt.subplots(1, 3, figsize=(15, 5), squeeze=False)
    for ax, values, title in zip(
        axes[0],
        (writes, reads, cpu),
        (
            "controller writes per step",
            "controller reads per step",
            "controller CPU ms per step (whole controller-manager for Jobs)",
        ),
        strict=True,
    ):
        ax.bar(range(len(values)), [0 if math.isnan(v) else v for v in values])
        ax.set_xticks(range(len(values)), labels, fontsize=6, rotation=30, ha="right")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_rss(results: Sequence[ScenarioResult], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    for result in results:
        if result.rss_curve:
            xs = [point[1] for point in result.rss_curve]
            ys = [point[2] / MB for point in result.rss_curve]
            ax.plot(xs, ys, linewidth=1, label=f"{configuration(result)}, run {result.spec.repeat}")
    ax.axhline(RSS_TARGET_MB, color="grey", linestyle=":", label=f"{RSS_TARGET_MB} MB")
    ax.set_xlabel("terminal StepRuns retained")
    ax.set_ylabel("operator RSS (MB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
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
