"""``python -m netloom.agent [OPTIONS]``: the host agent alone, the same command and options as
``netloom agent``.

Why a second entry point: ``netloom`` imports every command module (API client, lab, demo,
benchmarks) before running any of them, which costs 0.5-1.5 s on a busy 2-core host. An agent
restarted after a crash must serve new flows again within 1 s (issue 5), so the lab starts
agents through this module, which imports only the agent's own code.
"""

from __future__ import annotations

import typer

from netloom.cli.agent import register


def main() -> None:
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    register(app, typer.Typer())
    app()


if __name__ == "__main__":
    main()
