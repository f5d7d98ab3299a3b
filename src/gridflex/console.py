"""What the commands share on the terminal: the consoles, bad-input exits, numbers, files and a
progress bar."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

out = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print a bad-input error and return the exit to raise (code 2)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def fmt(v) -> str:
    """A number as the tables show it (— for none)."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def write(path: Path, text: str) -> None:
    """Write a file (its folder made), and say so on stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    err.print(f"wrote {path}")


class progress:
    """A progress bar on stderr; the context value is a callback taking the fraction done."""

    def __init__(self, label: str):
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
        )
        self.task = self.bar.add_task(label, total=1.0)

    def __enter__(self):
        self.bar.start()
        return lambda fraction: self.bar.update(self.task, completed=fraction)

    def __exit__(self, *exc) -> None:
        self.bar.stop()
