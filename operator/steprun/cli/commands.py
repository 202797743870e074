"""The commands that read or change existing StepRuns, the kubectl way: get, list, describe,
logs, wait, cancel, delete, rerun, version.

Registering them imports nothing heavy; each command loads the client when it runs.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steprun.cli import exit_codes
from steprun.cli.completion import complete_names
from steprun.cli.context import CliContext, add_command
from steprun.cli.durations import parse_duration

if TYPE_CHECKING:
    from steprun.cli.context import SubParsers

TABLE_OUTPUTS = ("table", "wide")
OUTPUTS = ("table", "wide", "name", "yaml", "json")
OUTPUT_HELP = (
    "table (default), wide, name (steprun.steprun.dev/NAME), yaml, json, jsonpath=TEMPLATE or "
    "custom-columns=HEADER:.json.path,... (kubectl's syntax)"
)


def output_format(value: str) -> str:
    """argparse type of -o: a format name or ``jsonpath=TEMPLATE`` (checked here)."""
    if value in OUTPUTS:
        return value
    for prefix in ("jsonpath=", "jsonpath:"):
        if value.startswith(prefix):
            from steprun.cli import jsonpath

            template = value[len(prefix) :]
            try:
                jsonpath.parse_template(template)
            except jsonpath.TemplateError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from exc
            return "jsonpath=" + template
    if value.startswith("custom-columns="):
        from steprun.cli import jsonpath
        from steprun.cli.output import parse_custom_columns

        try:
            for _, template in parse_custom_columns(value[len("custom-columns=") :]):
                jsonpath.parse_template(template)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return value
    raise argparse.ArgumentTypeError(f"unknown output format {value!r}; use {OUTPUT_HELP}")


def seconds(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _complete_outputs(prefix: str, **_: Any) -> list[str]:
    return [o for o in (*OUTPUTS, "jsonpath=", "custom-columns=") if o.startswith(prefix)]


def _add_output(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument(
        "-o", "--output", type=output_format, default="table", metavar="FORMAT", help=OUTPUT_HELP
    )
    output.completer = _complete_outputs  # type: ignore[attr-defined]
    parser.add_argument(
        "--no-headers", action="store_true", help="tables without their header line"
    )
    parser.add_argument(
        "--show-labels", action="store_true", help="tables end with a LABELS column"
    )
    parser.add_argument(
        "-L",
        "--label-columns",
        action="append",
        default=[],
        metavar="KEY[,KEY]",
        help="a column with each of these labels' values",
    )
    parser.add_argument(
        "--show-managed-fields",
        action="store_true",
        help="keep metadata.managedFields in YAML/JSON (left out by default, as kubectl does)",
    )


def _add_selectors(parser: argparse.ArgumentParser) -> None:
    for flags, text in (
        (("-l", "--selector"), "label selector, e.g. steprun.dev/workflow=build,team!=web"),
        (
            ("--field-selector",),
            "field selector, e.g. status.phase=Failed or spec.context.workflow.runId=42",
        ),
    ):
        parser.add_argument(*flags, metavar="SELECTOR", help=text)


def _add_watch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w", "--watch", action="store_true", help="after the listing, print each change"
    )


GET_HELP = """\
show StepRuns by name, or list them

Show StepRuns by name (without a NAME, list them as `steprun list` does): a table
(-o wide adds attempt, duration, Pod and workflow), their names, the objects as the
API server serves them (YAML or JSON), or fields picked by a JSONPath template. -w
prints each change after the first answer.

examples:
  steprun get build-42-lint
  steprun get build-42-lint -o yaml
  steprun get build-42-lint -o jsonpath='{.status.outputs}'
  steprun get build-42-lint -w
  steprun get -l team=web
"""

LIST_HELP = """\
list StepRuns

List StepRuns of a namespace (or all), optionally of one workflow, run or step, or
those a label or field selector picks. -o name prints bare names, one a line.
--workflow, --run-id, --step-id and --field-selector use the CRD's selectable
fields (spec.context.workflow.name/runId/stepId, spec.mode, status.phase), which
the API server offers from Kubernetes 1.31.

examples:
  steprun list
  steprun list -A -o wide
  steprun list --workflow build --run-id 42 -o yaml
  steprun list -l steprun.dev/workflow=build --sort-by .metadata.creationTimestamp
  steprun list --field-selector status.phase=Failed -o name
  steprun list -w
"""

DESCRIBE_HELP = """\
show a StepRun in detail: attempts, outputs, its Pod's state, events

Show a StepRun for a person: what it runs, its phase and reason, every attempt,
its outputs, the state (and last state) of its current Pod's container, and the
Events about it.

examples:
  steprun describe build-42-lint
"""

LOGS_HELP = """\
print a step's logs, every attempt in order

Print the logs of every attempt in order (or of one, --attempt). With -f, wait for
the Pod to start, follow it and the retries that come after, until the step ends.
--tail, --since and --timestamps apply to each attempt's log, as in kubectl logs.

examples:
  steprun logs build-42-lint
  steprun logs -f build-42-lint
  steprun logs build-42-lint --attempt 2 --tail 20
  steprun logs build-42-lint --since 10m --timestamps
"""

WAIT_HELP = f"""\
wait until a step ends; exit with its exit code

Wait until the step is finished and exit like `steprun run` would.

examples:
  steprun wait build-42-lint --timeout 600

{exit_codes.EXIT_CODES_HELP}"""

CANCEL_HELP = """\
cancel a step

Cancel a step (sets spec.cancel): its Pod is deleted, it ends Cancelled.

examples:
  steprun cancel build-42-lint
"""

DELETE_HELP = """\
delete StepRuns and everything they own

Delete StepRuns by name, by selector (-l, --field-selector) or all of a namespace
(--all); their Pods, ConfigMap and Secret are deleted with them. A name that is
not found is reported and the others are still deleted (exit code 1).

examples:
  steprun delete build-42-lint build-42-test
  steprun delete -l steprun.dev/run-id=42
  steprun delete --field-selector status.phase=Succeeded
"""

RERUN_HELP = f"""\
run a step again: a new StepRun with an old one's spec

Create a new StepRun with the spec and labels of an existing one (cancel cleared),
labelled steprun.dev/rerun-of=<old name>, then behave like `steprun run`: stream
its logs and exit with its exit code. The old StepRun is left as it is.

examples:
  steprun rerun build-42-lint
  steprun rerun build-42-lint --name build-42-lint-2 --detach

{exit_codes.EXIT_CODES_HELP}"""

VERSION_HELP = """\
print the client's and the API server's versions

Print the steprun client's version and the API server's (unless --client).

examples:
  steprun version
  steprun version --client -o json
"""


def _add_list_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list StepRuns of every namespace"
    )
    parser.add_argument("--workflow", metavar="W", help="only steps of this workflow")
    parser.add_argument("--run-id", metavar="R", help="only steps of this workflow run")
    parser.add_argument("--step-id", metavar="S", help="only steps with this step id")
    _add_selectors(parser)
    _add_output(parser)
    parser.add_argument(
        "--sort-by",
        metavar="JSONPATH",
        help="sort by this field, e.g. .metadata.creationTimestamp or .status.phase",
    )
    _add_watch(parser)


def register(subparsers: SubParsers, common: argparse.ArgumentParser) -> None:
    get = add_command(subparsers, "get", common, GET_HELP, get_command)
    # No NAME lists, as `kubectl get sr` does.
    complete_names(get.add_argument("names", nargs="*", metavar="NAME"))
    _add_list_flags(get)

    listing = add_command(
        subparsers,
        "list",
        common,
        LIST_HELP,
        list_command,
        aliases=["ls"],
    )
    _add_list_flags(listing)

    describe = add_command(subparsers, "describe", common, DESCRIBE_HELP, describe_command)
    complete_names(describe.add_argument("name", metavar="NAME"))

    logs = add_command(subparsers, "logs", common, LOGS_HELP, logs_command)
    complete_names(logs.add_argument("name", metavar="NAME"))
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the step ends")
    logs.add_argument("--attempt", type=int, metavar="N", help="only this attempt (1 = first)")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each attempt")
    logs.add_argument(
        "--since", type=seconds, metavar="DURATION", help="only lines newer than this (5s, 2m, 3h)"
    )
    logs.add_argument(
        "--timestamps", action="store_true", help="start each line with its RFC 3339 timestamp"
    )
    logs.add_argument(
        "--uid",
        metavar="UID",
        help="the StepRun of that uid: one of several deleted StepRuns archived under NAME",
    )

    wait = add_command(subparsers, "wait", common, WAIT_HELP, wait_command)
    complete_names(wait.add_argument("name", metavar="NAME"))
    wait.add_argument("--timeout", type=seconds, metavar="S", help="give up after S seconds")

    cancel = add_command(subparsers, "cancel", common, CANCEL_HELP, cancel_command)
    complete_names(cancel.add_argument("name", metavar="NAME"))

    delete = add_command(subparsers, "delete", common, DELETE_HELP, delete_command)
    complete_names(delete.add_argument("names", nargs="*", metavar="NAME"))
    _add_selectors(delete)
    delete.add_argument("--all", action="store_true", help="every StepRun of the namespace")
    delete.add_argument(
        "--ignore-not-found", action="store_true", help="a missing name is not an error"
    )

    rerun = add_command(subparsers, "rerun", common, RERUN_HELP, rerun_command)
    complete_names(rerun.add_argument("name", metavar="NAME"))
    rerun.add_argument(
        "--name", dest="new_name", help="the new StepRun's name (default: generated)"
    )
    rerun.add_argument("--no-logs", action="store_true", help="do not stream logs, just wait")
    rerun.add_argument("--detach", action="store_true", help="print the new name and exit")

    version = add_command(subparsers, "version", common, VERSION_HELP, version_command)
    version.add_argument("--client", action="store_true", help="only the client's version")
    version.add_argument("-o", "--output", choices=("text", "yaml", "json"), default="text")


# ---------------------------------------------------------------------- get / list


def _without_managed_fields(item: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in (item.get("metadata") or {}).items() if k != "managedFields"}
    return {**item, "metadata": metadata}


def _print(ctx: CliContext, items: list[dict[str, Any]], *, single: bool, header: bool) -> None:
    from steprun.cli.output import format_objects

    args = ctx.args
    if not args.show_managed_fields:
        items = [_without_managed_fields(item) for item in items]
    ctx.stdout.write(
        format_objects(
            items,
            args.output,
            datetime.now(UTC),
            single=single,
            with_namespace=getattr(args, "all_namespaces", False),
            no_headers=args.no_headers or not header,
            label_columns=[k for item in args.label_columns for k in item.split(",") if k],
            show_labels=args.show_labels,
        )
    )
    ctx.stdout.flush()


def _watch(
    ctx: CliContext,
    resource_version: str,
    *,
    label_selector: str | None,
    field_selector: str | None,
    single: bool,
    header_shown: bool = True,
) -> int:
    """Prints each change after the listing until Ctrl-C: tables without their header, unless
    the listing was empty and showed none (``header_shown``)."""
    events = ctx.client().watch_raw(
        namespace=None if getattr(ctx.args, "all_namespaces", False) else ctx.namespace,
        all_namespaces=getattr(ctx.args, "all_namespaces", False),
        label_selector=label_selector,
        field_selector=field_selector,
        resource_version=resource_version,
    )
    try:
        for event in events:
            if ctx.args.output in ("yaml",):
                ctx.stdout.write("---\n")
            _print(ctx, [event["object"]], single=single, header=not header_shown)
            header_shown = True
    except KeyboardInterrupt:
        return exit_codes.OK
    return exit_codes.OK


def get_command(args: argparse.Namespace, ctx: CliContext) -> int:
    if not args.names:
        return list_command(args, ctx)
    selectors = [
        flag
        for flag, value in (
            ("-l", args.selector),
            ("--field-selector", args.field_selector),
            ("--workflow", args.workflow),
            ("--run-id", args.run_id),
            ("--step-id", args.step_id),
            ("-A", args.all_namespaces),
        )
        if value
    ]
    if selectors:
        ctx.err(f"error: a NAME cannot be given with {', '.join(selectors)} (it lists)")
        return exit_codes.USAGE
    client = ctx.client()  # first: without a cluster configuration, say so at once
    from steprun.client import StepRunNotFound

    found: list[dict[str, Any]] = []
    missing: list[StepRunNotFound] = []
    for name in args.names:
        try:
            found.append(client.get_raw(name, ctx.namespace))
        except StepRunNotFound as exc:
            missing.append(exc)
    if found:
        _print(ctx, found, single=len(args.names) == 1, header=True)
    for error in missing:
        ctx.err(f"error: {error}")
    if missing:
        return exit_codes.ERROR
    if args.watch:
        from steprun.client.objects import name_field_selector

        if len(args.names) != 1:
            ctx.err("error: -w watches one StepRun by name; use `steprun list -w -l ...` for more")
            return exit_codes.USAGE
        rv = str(found[0]["metadata"].get("resourceVersion") or "")
        return _watch(
            ctx,
            rv,
            label_selector=None,
            field_selector=name_field_selector(args.names[0]),
            single=True,
        )
    return exit_codes.OK


def list_selectors(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The label and field selectors of list's flags (--workflow & co. are field selectors)."""
    from steprun.client.objects import steprun_field_selector

    fields = [
        part
        for part in (
            steprun_field_selector(
                workflow=args.workflow, run_id=args.run_id, step_id=args.step_id
            ),
            args.field_selector,
        )
        if part
    ]
    return (args.selector or None), (",".join(fields) or None)


def list_command(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client()  # first: without a cluster configuration, say so at once
    label_selector, field_selector = list_selectors(args)
    body = client.list_raw(
        namespace=None if args.all_namespaces else ctx.namespace,
        all_namespaces=args.all_namespaces,
        label_selector=label_selector,
        field_selector=field_selector,
    )
    items: list[dict[str, Any]] = list(body.get("items") or [])
    if args.sort_by:
        from steprun.cli.jsonpath import TemplateError, sort_key

        try:
            items.sort(key=sort_key(args.sort_by))
        except TemplateError as exc:
            ctx.err(f"error: --sort-by: {exc}")
            return exit_codes.USAGE
    else:
        items.sort(key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]))
    if not items and args.output in TABLE_OUTPUTS:
        ctx.err(
            "No StepRuns found."
            if args.all_namespaces
            else f"No StepRuns found in {ctx.namespace} namespace."
        )
    elif items or args.output not in (*TABLE_OUTPUTS, "name"):
        _print(ctx, items, single=False, header=True)
    if args.watch:
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return _watch(
            ctx,
            rv,
            label_selector=label_selector,
            field_selector=field_selector,
            single=False,
            header_shown=bool(items),
        )
    return exit_codes.OK


# ---------------------------------------------------------------------- describe


def describe_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from steprun.cli.describe import describe
    from steprun.client import ApiError

    client = ctx.client()
    body = client.get_raw(args.name, ctx.namespace)
    pods = client.pods_raw(args.name, ctx.namespace)
    events: list[dict[str, Any]] | str
    try:
        events = client.events_raw(args.name, ctx.namespace)
    except ApiError as exc:
        # Reading Events is a separate permission (the engine role lacks it): say so, go on.
        events = f"<cannot list events: {exc}>"
    ctx.stdout.write(describe(body, pods, events, datetime.now(UTC)))
    return exit_codes.OK


# ---------------------------------------------------------------------- logs, wait, cancel


def logs_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from steprun.cli.run import show_event
    from steprun.client.logs import LogOptions

    options = LogOptions(
        tail=args.tail,
        since_seconds=None if args.since is None else max(1, int(args.since)),
        timestamps=args.timestamps,
    )
    events = ctx.client().log_events(
        args.name,
        namespace=ctx.namespace,
        follow=args.follow,
        attempt=args.attempt,
        options=options,
        uid=args.uid,
    )
    try:
        for event in events:
            show_event(ctx, event)
    except KeyboardInterrupt:
        return exit_codes.CANCELLED
    return exit_codes.OK


def wait_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from steprun.cli.run import report_end
    from steprun.client import WaitTimeout

    try:
        steprun = ctx.client().wait(args.name, namespace=ctx.namespace, timeout=args.timeout)
    except WaitTimeout as exc:
        ctx.err(f"error: {exc}")
        return exit_codes.WAIT_TIMEOUT
    except KeyboardInterrupt:
        return exit_codes.CANCELLED
    report_end(ctx, steprun)
    return exit_codes.exit_code_for(steprun)


def cancel_command(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.client().cancel(args.name, namespace=ctx.namespace)
    ctx.out(f"steprun/{args.name} cancel requested")
    return exit_codes.OK


# ---------------------------------------------------------------------- delete, rerun


def delete_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from steprun.client import StepRunNotFound

    selecting = bool(args.selector or args.field_selector or args.all)
    if bool(args.names) == selecting:
        ctx.err("error: give NAMEs, or select with -l/--field-selector/--all (not both)")
        return exit_codes.USAGE
    client = ctx.client()
    names = list(args.names)
    if selecting:
        body = client.list_raw(
            namespace=ctx.namespace,
            label_selector=args.selector,
            field_selector=args.field_selector,
        )
        names = sorted(item["metadata"]["name"] for item in body.get("items") or [])
        if not names:
            ctx.err(f"No StepRuns found in {ctx.namespace} namespace.")
    code = exit_codes.OK
    for name in names:
        try:
            client.delete(name, namespace=ctx.namespace)
        except StepRunNotFound as exc:
            if not args.ignore_not_found:
                ctx.err(f"error: {exc}")
                code = exit_codes.ERROR
            continue
        ctx.out(f"steprun/{name} deleted")
    return code


def rerun_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from steprun.cli.run import create_and_follow
    from steprun.cli.spec_args import rerun_request

    client = ctx.client()
    namespace = ctx.namespace
    old = client.get(args.name, namespace)
    return create_and_follow(
        ctx,
        client,
        rerun_request(old, name=args.new_name),
        namespace,
        detach=args.detach,
        show_logs=not args.no_logs,
        note=f" (a rerun of {args.name})",
    )


# ---------------------------------------------------------------------- version


def client_version() -> dict[str, str]:
    import platform
    from importlib import metadata

    return {"version": metadata.version("steprun"), "python": platform.python_version()}


def version_command(args: argparse.Namespace, ctx: CliContext) -> int:
    info: dict[str, Any] = {"clientVersion": client_version()}
    code = exit_codes.OK
    error: Exception | None = None
    if not args.client:
        try:
            info["serverVersion"] = ctx.client().server_version()
        except Exception as failure:
            # Like kubectl: the client's version is still printed before the failure is.
            error = failure
    if args.output == "text":
        client = info["clientVersion"]
        ctx.out(f"Client Version: {client['version']} (Python {client['python']})")
        if "serverVersion" in info:
            ctx.out(f"Server Version: {info['serverVersion'].get('gitVersion', 'unknown')}")
    else:
        from steprun.cli.output import dump

        ctx.stdout.write(dump(info, args.output))
    if error is not None:
        raise error
    return code
