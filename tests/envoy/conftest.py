"""Fixtures for the Envoy stats tests: real Envoy + httpbin helpers from tests/envoy_fixtures.py."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/

from envoy_fixtures import envoy_factory, httpbin  # noqa: F401
