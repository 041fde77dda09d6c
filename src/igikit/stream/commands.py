"""Placeholder until the stream commands land."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """No commands yet."""
