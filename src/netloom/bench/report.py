"""Tables the benchmarks print: one layout for text tables, one for key/value figures."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown-style table as lines: first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(head), sep, *(line(r) for r in rows)]


def key_values(rows: Sequence[tuple[str, object]]) -> str:
    """``key  value`` lines, the values aligned in one column."""
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def print_figures(title: str, rows: Sequence[tuple[str, object]], *, header: bool = False) -> None:
    """Print ``rows`` (figure, value) as a rich table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=header)
    table.add_column("figure")
    table.add_column("value", justify="right" if header else "left")
    for key, value in rows:
        table.add_row(key, str(value))
    Console().print(table)


__all__ = ["key_values", "print_figures", "text_table"]
