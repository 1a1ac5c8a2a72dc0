"""Hypothesis profiles: "ci" (default, fast) and "deep" (``pytest --hypothesis-profile deep``)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (tens at most); run by default")
