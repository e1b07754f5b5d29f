"""Fixtures of the report tests: the committed run JSON files (see data/make_fixtures.py)."""

from __future__ import annotations

import os

import pytest

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="session")
def data_dir() -> str:
    return DATA
