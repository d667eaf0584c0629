"""The command line: every command and every group answers ``--help`` with its own text and exit 0."""

import pytest

from unprior.cli import COMMANDS, main

GROUPS = sorted({name.split()[0] for name in COMMANDS if " " in name})


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_help(name, capsys):
    assert main([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: unprior {name} ") and "config fields:" in out


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_group_lists_its_subcommands(group, flag, capsys):
    assert main([group, flag]) == 0
    out = capsys.readouterr().out
    subs = [n for n in COMMANDS if n.startswith(group + " ")]
    assert subs and all(f"  {n} " in out for n in subs), out
    assert all(COMMANDS[n].summary in out for n in subs)


def test_world_and_eval_help_are_their_own():
    for group, expected in (("world", {"build", "base", "report", "probe"}), ("eval", {"run", "compare"})):
        assert expected <= {n.split()[1] for n in COMMANDS if n.startswith(group + " ")}


def test_a_group_without_a_subcommand_or_with_a_wrong_one_fails_with_its_list(capsys):
    assert main(["world"]) == 2
    assert "world build" in capsys.readouterr().err
    assert main(["eval", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'nope'" in err and "eval run" in err


def test_top_level_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0 and "commands:" in capsys.readouterr().out
    assert main([]) == 0
    capsys.readouterr()
    assert main(["bogus"]) == 2 and "unknown command 'bogus'" in capsys.readouterr().err
