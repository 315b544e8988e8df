"""The one rich console Trainyard prints to (stderr, so stdout stays clean for data)."""

from rich.console import Console

console = Console(stderr=True, highlight=False)
