"""``steprun artifacts ls|get``: what a step uploaded, and one of its artifacts as a file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from steprun.cli import exit_codes
from steprun.cli.context import CliContext, add_command

if TYPE_CHECKING:
    from steprun.cli.context import SubParsers


HELP = """\
list or download a step's artifacts

List the artifacts a step uploaded (every attempt), or download one as a tar+gzip
file with its sha256 checked. Downloads read the store with your own credentials:
STEPRUN_ARTIFACTS_ENDPOINT, STEPRUN_ARTIFACTS_BUCKET, STEPRUN_ARTIFACTS_KEY_PREFIX
and STEPRUN_ARTIFACTS_ACCESS_KEY/_SECRET_KEY (or AWS_ACCESS_KEY_ID/...).

examples:
  steprun artifacts ls build-42
  steprun artifacts get build-42 dist -o dist.tgz
  steprun artifacts get build-42 dist --attempt 1
"""


def register(subparsers: SubParsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(subparsers, "artifacts", common, HELP)
    actions = parser.add_subparsers(dest="artifacts_command", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "ls", aliases=["list"], parents=[common], help="list uploaded artifacts"
    )
    listing.add_argument("name", metavar="NAME", help="the StepRun")
    listing.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    listing.set_defaults(func=ls_command)
    get = actions.add_parser("get", parents=[common], help="download one artifact to a file")
    get.add_argument("name", metavar="NAME", help="the StepRun")
    get.add_argument("artifact", metavar="ARTIFACT", help="the output's name")
    get.add_argument("--attempt", type=int, metavar="N", help="that attempt's upload")
    get.add_argument(
        "-o", "--output", metavar="FILE", help="where to write it (default: ARTIFACT.tgz)"
    )
    get.set_defaults(func=get_command)


def ls_command(args: argparse.Namespace, ctx: CliContext) -> int:
    # Loaded by the command, not with the parser: `steprun --help` must not import the models.
    from steprun.cli.output import dump, format_table

    found = ctx.client().artifacts(args.name, namespace=ctx.namespace)
    if args.output != "table":
        ctx.stdout.write(dump([a.to_api() for a in found], args.output))
    elif not found:
        ctx.err(f"StepRun {args.name} uploaded no artifacts.")
    else:
        rows = [[a.name, str(a.attempt), str(a.size), a.sha256, a.key] for a in found]
        ctx.stdout.write(format_table(["NAME", "ATTEMPT", "SIZE", "SHA256", "KEY"], rows))
    return exit_codes.OK


def get_command(args: argparse.Namespace, ctx: CliContext) -> int:
    dest = Path(args.output or f"{args.artifact}.tgz")
    written = ctx.client().download(
        args.name, args.artifact, dest, namespace=ctx.namespace, attempt=args.attempt
    )
    ctx.err(f"{written}: sha256 verified")
    return exit_codes.OK
