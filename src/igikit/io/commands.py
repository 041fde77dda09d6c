"""Placeholder until the io commands land."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """No commands yet."""
