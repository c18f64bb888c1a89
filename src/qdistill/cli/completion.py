"""``qdistill completion bash|zsh``: a shell completion script, made from the parser itself.

    eval "$(qdistill completion bash)"     # in ~/.bashrc
    eval "$(qdistill completion zsh)"      # in ~/.zshrc, after compinit

Completes subcommands, options, the values of options with a fixed set (``--method``,
``--executor``, ``--device``, ...) and the choices of positional arguments; other option
values complete as file names. Made with argparse alone (no extra package): the script
is generated from :func:`qdistill.cli.parser.build_parser`, so it never lists an option the
command line does not have.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

SHELLS = ("bash", "zsh")
# Values offered for an option whose argparse ``type`` has this name (no fixed choices).
_TYPE_VALUES = {"device": ["auto", "cpu", "cuda"]}


def _nodes(parser: argparse.ArgumentParser, path: str = "qdistill"
           ) -> Iterator[tuple[str, list[str], dict[str, list[str] | None]]]:
    """(command path, words to offer, {option taking a value: its values or None})."""
    words: list[str] = []
    values: dict[str, list[str] | None] = {}
    children = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                children.append((name, sub))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            words.extend(action.option_strings)
            if action.nargs != 0:
                choices = [str(c) for c in action.choices] if action.choices else \
                    _TYPE_VALUES.get(getattr(action.type, "__name__", ""))
                for opt in action.option_strings:
                    values[opt] = choices
        elif action.choices:  # a positional with fixed choices
            words.extend(str(c) for c in action.choices)
    yield path, words, values
    for name, sub in children:
        yield from _nodes(sub, f"{path} {name}")


def bash_script(parser: argparse.ArgumentParser) -> str:
    nodes = list(_nodes(parser))
    subcommands = [p for p, _, _ in nodes[1:]]
    descend = "|".join(f"'{p.rsplit(' ', 1)[0]}>{p.rsplit(' ', 1)[1]}'" for p in subcommands)
    value_cases, word_cases = [], []
    for path, words, values in nodes:
        with_choices = {o: v for o, v in values.items() if v}
        for opt, vals in sorted(with_choices.items()):
            value_cases.append(f"        '{path}>{opt}') COMPREPLY=($(compgen -W "
                               f"\"{' '.join(vals)}\" -- \"$cur\")); return ;;")
        files = sorted(o for o, v in values.items() if not v)
        if files:
            alts = "|".join(f"'{path}>{o}'" for o in files)
            value_cases.append(f"        {alts}) COMPREPLY=(); return ;;")
        word_cases.append(f"        '{path}') words=\"{' '.join(words)}\" ;;")
    return "\n".join([
        "# bash completion for qdistill (made by: qdistill completion bash)",
        "_qdistill() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="qdistill" words="" i w',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        '        case "$cmd>$w" in',
        f'            {descend}) cmd="$cmd $w" ;;',
        "        esac",
        "    done",
        '    case "$cmd>$prev" in  # the value of an option: its choices, or file names',
        *value_cases,
        "    esac",
        '    case "$cmd" in',
        *word_cases,
        "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        "complete -o default -F _qdistill qdistill",
        "",
    ])


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (bash, or zsh through its bashcompinit)."""
    if shell == "bash":
        return bash_script(parser)
    if shell == "zsh":
        return ("# zsh completion for qdistill (made by: qdistill completion zsh); load it "
                "after compinit\nautoload -U +X bashcompinit && bashcompinit\n"
                + bash_script(parser))
    raise ValueError(f"unknown shell {shell!r}; valid: {', '.join(SHELLS)}")


def cmd_completion(args: argparse.Namespace) -> int:
    print(script(args.shell, args.completion_parser), end="")
    return 0


def add_completion_parser(sub: Any, root: argparse.ArgumentParser) -> None:
    """``qdistill completion bash|zsh`` on the subcommand table ``sub`` of ``root``."""
    p = sub.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script: add eval \"$(qdistill completion bash)\" to "
                    "~/.bashrc, or eval \"$(qdistill completion zsh)\" to ~/.zshrc after "
                    "compinit.")
    p.add_argument("shell", choices=SHELLS, help="bash | zsh")
    p.set_defaults(func=cmd_completion, completion_parser=root)
