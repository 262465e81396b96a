import pytest

from cage_sf.backends import cyborg_available


def pytest_collection_modifyitems(config, items):
    if cyborg_available():
        return
    skip = pytest.mark.skip(reason="CybORG CC4 is not installed (install it from upstream, see README)")
    for item in items:
        if "cyborg" in item.keywords:
            item.add_marker(skip)
