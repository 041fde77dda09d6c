"""Placeholder until the supervise commands land."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """No commands yet."""
