"""The CLI-command input adapter: context.inputs as flags."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.render.flags import FlagError, cli_arguments, flags_to_args


@pytest.mark.parametrize(
    ("inputs", "args"),
    [
        pytest.param({}, [], id="nothing"),
        pytest.param({"dir": "src"}, ["--dir=src"], id="string"),
        pytest.param({"dir": ""}, ["--dir="], id="empty-string-is-a-value"),
        pytest.param({"msg": "a b; $(x)"}, ["--msg=a b; $(x)"], id="one-argument-per-string"),
        pytest.param({"fix": True}, ["--fix"], id="true-is-a-bare-flag"),
        pytest.param({"fix": False}, [], id="false-is-left-out"),
        pytest.param({"fix": None}, [], id="null-is-left-out"),
        pytest.param({"max": 3}, ["--max=3"], id="integer"),
        pytest.param({"ratio": 0.5}, ["--ratio=0.5"], id="float"),
        pytest.param({"ext": ["js", "ts"]}, ["--ext=js", "--ext=ts"], id="list-repeats"),
        pytest.param({"ext": []}, [], id="empty-list-is-left-out"),
        pytest.param(
            {"n": [1, True, None, {"a": 1}]},
            ["--n=1", "--n=true", "--n=null", '--n={"a":1}'],
            id="list-items-that-are-not-strings-as-json",
        ),
        pytest.param(
            {"rules": {"semi": "off", "a": [1, 2]}},
            ['--rules={"a":[1,2],"semi":"off"}'],
            id="object-as-compact-json-with-sorted-keys",
        ),
        pytest.param({"name": "ü"}, ["--name=ü"], id="unicode"),
        pytest.param(
            {"z": "1", "dryRun": True, "a": "2", "B": "3"},
            ["--B=3", "--a=2", "--dryRun", "--z=1"],
            id="keys-sorted-and-used-as-written",
        ),
        pytest.param({"max-warnings": 0}, ["--max-warnings=0"], id="dashed-key"),
        pytest.param({"a.b_c": "x"}, ["--a.b_c=x"], id="dotted-key"),
        # An earlier step's output passed on as an input must not become a flag of its own.
        pytest.param({"dir": "--evil"}, ["--dir=--evil"], id="value-like-a-flag-stays-a-value"),
        pytest.param({"dir": "-x"}, ["--dir=-x"], id="value-like-a-short-flag"),
        pytest.param({"dir": "a=b"}, ["--dir=a=b"], id="value-holding-equals"),
        pytest.param({"ext": ["--evil"]}, ["--ext=--evil"], id="list-item-like-a-flag"),
    ],
)  # fmt: skip
def test_flags(inputs: dict[str, Any], args: list[str]) -> None:
    assert flags_to_args(inputs) == args
    assert cli_arguments(inputs) == args


@pytest.mark.parametrize(
    ("inputs", "args"),
    [
        pytest.param({"argv": ["src", "lib"]}, ["--", "src", "lib"], id="argv-only"),
        pytest.param({"flags": {"fix": True}}, ["--fix"], id="flags-only"),
        pytest.param({"argv": [], "flags": {}}, [], id="no-argv-no-separator"),
        # After "--" a parser takes every word as positional, however it is spelled.
        pytest.param({"argv": ["--evil", "-x"]}, ["--", "--evil", "-x"], id="argv-like-flags"),
        pytest.param(
            {"argv": ["src", 2], "flags": {"fix": True, "ext": ["js"]}, "cwd": "/w", "other": 1},
            ["--ext=js", "--fix", "--", "src", "2"],
            id="flags-then-argv-other-keys-ignored",
        ),
    ],
)  # fmt: skip
def test_inputs_already_in_cli_form_are_used_as_given(
    inputs: dict[str, Any], args: list[str]
) -> None:
    assert cli_arguments(inputs) == args


def test_the_step_args_come_after_the_flags_and_before_the_positional_inputs() -> None:
    inputs = {"argv": ["--evil"], "flags": {"fix": True}}
    assert cli_arguments(inputs, ["--quiet"]) == ["--fix", "--quiet", "--", "--evil"]
    assert cli_arguments({"fix": True}, ["src"]) == ["--fix", "src"]


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        pytest.param({"": "x"}, "context.inputs key ''", id="empty-key"),
        pytest.param({"-x": "1"}, "context.inputs key '-x'", id="leading-dash"),
        pytest.param({"a b": "1"}, "context.inputs key 'a b'", id="space"),
        pytest.param({"a=b": "1"}, "context.inputs key 'a=b'", id="equals"),
        pytest.param({"flags": {"x y": 1}}, "context.inputs.flags key 'x y'", id="nested-flag"),
        pytest.param({"flags": ["-f"]}, "context.inputs.flags must be an object", id="flags-list"),
        pytest.param({"argv": "src"}, "context.inputs.argv must be a list", id="argv-string"),
        pytest.param({"argv": [["a"]]}, "context.inputs.argv must be a list", id="argv-nested"),
        pytest.param({"argv": [True]}, "context.inputs.argv must be a list", id="argv-boolean"),
    ],
)  # fmt: skip
def test_inputs_that_cannot_be_flags_are_refused_naming_the_key(
    inputs: dict[str, Any], words: str
) -> None:
    with pytest.raises(FlagError) as refused:
        cli_arguments(inputs)
    assert words in str(refused.value)
