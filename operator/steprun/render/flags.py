"""The CLI-command input adapter: a step's ``context.inputs`` as command-line flags (pure).

A ``uses: command:<name>`` step runs a plugin's CLI command, which takes flags where a workflow
handler takes a JSON input. As workflow runtimes do, the input becomes ``{argv, flags}``:
``flags`` is the whole of ``context.inputs``, unless the inputs already hold an ``argv`` list or
a ``flags`` object, in which case those two are used as given (other keys then stay in
context.json only). The Pod's arguments are the flags, then ``spec.args``, then ``--`` and argv:

==========================  =======================================
input                       arguments
==========================  =======================================
``{"fix": true}``           ``--fix``
``{"fix": false}``          (nothing: false and null are left out)
``{"dir": "src"}``          ``--dir=src``
``{"max": 3}``              ``--max=3`` (numbers as JSON writes them)
``{"ext": ["js", "ts"]}``   ``--ext=js --ext=ts`` (one flag per item)
``{"rules": {"a": 1}}``     ``--rules={"a":1}`` (compact JSON)
``{"argv": ["a", "-b"]}``   ``-- a -b``
==========================  =======================================

Inputs often carry an earlier step's outputs, which nobody vetted: a value is therefore glued
to its flag (``--dir=--evil`` is the flag ``dir`` with a value, never the flag ``--evil``), and
positional arguments follow ``--``, after which parsers read no flags. Flags come in key order
(sorted, as the API server stores the object), so the same inputs always give the same command
line. A key must be a flag name: a letter or digit, then letters, digits, ``-``, ``_`` or
``.``; it is used as written (``dryRun`` gives ``--dryRun``). Inside a list, items that are not
strings are passed as their JSON text (``true``, ``1.5``, ``{"a":1}``), and an empty list gives
no flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

FLAG_NAME_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9_.]*$"
_FLAG_NAME = re.compile(FLAG_NAME_PATTERN)


class FlagError(ValueError):
    """The inputs cannot become a command line; the message names the key to fix."""


def cli_arguments(inputs: Mapping[str, Any], args: Sequence[str] = ()) -> list[str]:
    """``context.inputs`` as the arguments of a CLI command: flags, ``args``, then ``--`` argv.

    ``args`` (the step's own ``spec.args``, written by its author) come before the separator,
    so an author may still pass flags of their choosing.
    """
    if "argv" in inputs or "flags" in inputs:
        flags = inputs.get("flags", {})
        argv = inputs.get("argv", [])
        if not isinstance(flags, Mapping):
            raise FlagError("context.inputs.flags must be an object of flag names to values")
        if not isinstance(argv, list) or not all(_is_scalar(a) for a in argv):
            raise FlagError(
                "context.inputs.argv must be a list of strings (or numbers): the command's "
                "positional arguments"
            )
        positional = ["--", *(_text(a) for a in argv)] if argv else []
        return [*flags_to_args(flags, where="context.inputs.flags"), *args, *positional]
    return [*flags_to_args(inputs, where="context.inputs"), *args]


def flags_to_args(flags: Mapping[str, Any], where: str = "flags") -> list[str]:
    """``{"fix": true, "dir": "src"}`` -> ``["--dir=src", "--fix"]`` (see the module doc)."""
    args: list[str] = []
    for key in sorted(flags):
        if not _FLAG_NAME.match(key):
            raise FlagError(
                f"{where} key {key!r} cannot be a command-line flag: a flag name is a letter or "
                "digit followed by letters, digits, -, _ or ."
            )
        value = flags[key]
        flag = f"--{key}"
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            args += [f"{flag}={_text(item)}" for item in value]
        else:
            args.append(f"{flag}={_text(value)}")
    return args


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
