"""What every command gets: its arguments, output streams, and a client made on first use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from steprun.client import StepRunClient

ClientFactory = Callable[[argparse.Namespace], StepRunClient]

if TYPE_CHECKING:
    # What each command module's register() adds its parser to (generic only for type checkers).
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


class UnreadableFile(OSError):
    """A file named on the command line cannot be read; the message names it."""


def read_source(path: str) -> str:
    """The text of a file named on the command line; "-" is stdin."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror}") from exc


def client_from_args(args: argparse.Namespace) -> StepRunClient:
    """A client for the global flags --kubeconfig, --context and -n/--namespace."""
    return StepRunClient.from_kubeconfig(
        getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        namespace=getattr(args, "namespace", None),
    )


@dataclass
class CliContext:
    args: argparse.Namespace
    stdout: TextIO
    stderr: TextIO
    make_client: ClientFactory = client_from_args
    _client: StepRunClient | None = field(default=None, repr=False)

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
