"""Hypothesis profiles: "ci" (default, fast) and "deep" (``pytest --hypothesis-profile deep``); the slow marker.

``pytest -m "not slow"`` is the quick inner loop (under a minute); CI runs everything. Tests are marked
``@pytest.mark.slow`` where they are defined; the one rule here is for scikit-learn's generated checks.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: scikit-learn's estimator checks that train a CNN to a target accuracy (seconds each); the others are quick.
SLOW_ESTIMATOR_CHECKS = ("check_classifiers_train",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.originalname == "test_scikit_learn_estimator_checks" and any(
                check in item.name for check in SLOW_ESTIMATOR_CHECKS):
            item.add_marker(pytest.mark.slow)
