"""`python -m graphdsl.cli`: the same as the `graphdsl` command."""

from graphdsl.cli.main import run

run()
