"""`qrng` commands of the verifiable-randomness work (beacon). BEING BUILT."""

from __future__ import annotations

import click

__all__ = ["COMMANDS"]

COMMANDS: list[click.Command] = []
