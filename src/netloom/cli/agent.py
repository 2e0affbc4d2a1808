"""``netloom agent``: run the host agent (one per host, inside the host's network namespace).

The options are the agent's own (:func:`netloom.agent.options.parser`): this command hands its
arguments to that parser unchanged, so ``netloom agent`` and ``python -m netloom.agent`` accept
exactly the same command line."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(
        "agent",
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def agent_cmd(ctx: typer.Context) -> None:
        """Run the host agent until SIGTERM: bindings, upcalls, flows, tunnels, metrics
        (`netloom agent --help` lists the options)."""
        from netloom.agent.runner import main

        raise typer.Exit(main(list(ctx.args)))


__all__ = ["register"]
