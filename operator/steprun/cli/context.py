"""What every command gets: its arguments, output streams, and a client made on first use.

Nothing heavy is imported here (nor by the modules that register commands): `steprun --help`
and completion must answer without loading the Kubernetes client.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from steprun.client import StepRunClient

    # What each command module's register() adds its parser to (generic only for type checkers).
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

ClientFactory = Callable[[argparse.Namespace], "StepRunClient"]

# The CLI is interactive: an API server that does not answer is reported after one retry, not
# after the library's longer backoff (which rides out an API server restart for engines).
CLI_RETRIES = 1
DEFAULT_CONNECT_TIMEOUT = 5.0


def add_command(
    subparsers: SubParsers,
    name: str,
    parent: argparse.ArgumentParser | None,
    text: str,
    func: Callable[[argparse.Namespace, CliContext], int] | None = None,
    *,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """A command's parser, its help written as --help shows it. ``text`` holds a one-line
    summary (the command list's), a blank line, the description, a blank line, then from
    "examples:" on what follows the options. ``func`` runs the command."""
    summary, _, rest = text.partition("\n\n")
    description, found, after = rest.partition("\n\nexamples:\n")
    if not found:
        raise ValueError(f"the help text of {name!r} has no examples")
    parser = subparsers.add_parser(
        name,
        aliases=list(aliases),
        parents=[parent] if parent is not None else [],
        help=summary,
        description=description,
        epilog="examples:\n" + after,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if func is not None:
        parser.set_defaults(func=func)
    return parser


class UnreadableFile(OSError):
    """A file named on the command line cannot be read; the message names it."""


class NoClusterConfig(Exception):
    """There is no way to reach a cluster; the message says what to set."""


class SourceText(str):
    """A file's text that knows the file's name, so errors about its content can name it."""

    source: str

    def __new__(cls, text: str, source: str) -> SourceText:
        made = super().__new__(cls, text)
        made.source = source
        return made


def source_name(text: str) -> str:
    """The file ``text`` was read from, as errors name it ("<stdin>" when unknown)."""
    return getattr(text, "source", "<stdin>")


def read_source(path: str) -> str:
    """The text of a file named on the command line; "-" is stdin."""
    if path == "-":
        return SourceText(sys.stdin.read(), "<stdin>")
    try:
        with open(path, encoding="utf-8") as handle:
            return SourceText(handle.read(), path)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror}") from exc


def check_cluster_config(explicit: str | None) -> None:
    """Raises NoClusterConfig when neither a kubeconfig nor the in-cluster service is there."""
    from steprun.kube.locate import kubeconfig_path

    if explicit and not os.path.exists(explicit):
        raise NoClusterConfig(f"the kubeconfig {explicit} (--kubeconfig) does not exist")
    from_env = os.environ.get("KUBECONFIG")
    if not explicit and from_env and not any(os.path.exists(p) for p in from_env.split(":")):
        raise NoClusterConfig(f"the kubeconfig {from_env} ($KUBECONFIG) does not exist")
    if kubeconfig_path(explicit) is None and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise NoClusterConfig(
            "no cluster configuration: pass --kubeconfig FILE, set KUBECONFIG, or create "
            "~/.kube/config (there is none, and this is not a Pod in a cluster)"
        )


def request_timeout(args: argparse.Namespace) -> tuple[float, float] | None:
    """(connect, read) timeouts of ordinary requests: --request-timeout bounds both."""
    seconds: float | None = getattr(args, "request_timeout", None)
    if seconds:
        return (seconds, seconds)
    return None


def client_from_args(args: argparse.Namespace) -> StepRunClient:
    """A client for the global flags --kubeconfig, --context, -n and --request-timeout."""
    explicit = getattr(args, "kubeconfig", None)
    # Before any import of the client: saying there is no cluster must not wait for it.
    check_cluster_config(explicit)
    from steprun.client import StepRunClient
    from steprun.client.backoff import Backoff

    timeouts = request_timeout(args) or (DEFAULT_CONNECT_TIMEOUT, 60.0)
    return StepRunClient.from_kubeconfig(
        explicit,
        context=getattr(args, "context", None),
        namespace=getattr(args, "namespace", None),
        backoff=Backoff(retries=CLI_RETRIES),
        request_timeout=timeouts,
    )


class CliContext:
    # A plain class, not a dataclass: importing dataclasses costs --help a tenth of its time.
    def __init__(
        self,
        args: argparse.Namespace,
        stdout: TextIO,
        stderr: TextIO,
        make_client: ClientFactory = client_from_args,
    ) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.make_client = make_client
        self._client: StepRunClient | None = None

    def client(self) -> StepRunClient:
        # Made lazily: `render`, `completion` and `--help` must work without a cluster.
        if self._client is None:
            self._client = self.make_client(self.args)
        return self._client

    @property
    def namespace(self) -> str:
        """The namespace of -n/--namespace, else the client's (kubeconfig context's)."""
        explicit: str | None = getattr(self.args, "namespace", None)
        return explicit or self.client().namespace

    def out(self, text: str) -> None:
        self.stdout.write(text if text.endswith("\n") else text + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text if text.endswith("\n") else text + "\n")
        self.stderr.flush()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
