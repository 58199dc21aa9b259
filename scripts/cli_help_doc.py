#!/usr/bin/env python3
"""Writes docs/cli.md: the `--help` of `tessera` and of every subcommand, as the binary prints
them. tests/python/test_cli_help.py fails when the file and the binary disagree; regenerate with
`python3 scripts/cli_help_doc.py build/tessera > docs/cli.md`."""

import re
import subprocess
import sys


def help_of(binary, *cmd):
    out = subprocess.run([binary, *cmd, "--help"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} --help exited {out.returncode}: {out.stderr}")
    return out.stdout.rstrip() + "\n"


def subcommands(text):
    """Names under "Subcommands:" in a help text."""
    part = text.split("Subcommands:", 1)
    if len(part) < 2:
        return []
    return re.findall(r"^  ([a-z][a-z-]*)\s", part[1], re.M)


def document(binary):
    top = help_of(binary)
    out = ["# Command-line reference", "",
           "Generated from the binary by `scripts/cli_help_doc.py` (a test checks it is current).",
           "Exit codes: 0 ok, 1 runtime error, 2 usage error. A flag given on the command line",
           "wins over the topology file (`--config`), the file over the flag's default.", "",
           "## tessera", "", "```", top.rstrip(), "```", ""]
    for cmd in subcommands(top):
        text = help_of(binary, cmd)
        out += [f"## tessera {cmd}", "", "```", text.rstrip(), "```", ""]
        for sub in subcommands(text):
            out += [f"## tessera {cmd} {sub}", "", "```", help_of(binary, cmd, sub).rstrip(), "```",
                    ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(document(sys.argv[1] if len(sys.argv) > 1 else "build/tessera"))
