"""A local EC2-compatible test cloud: moto in its own process behind a small middleware.

See middleware.py for what it simulates (quota, faults, ClientToken
idempotency, instances backed by real local hosts) and fixtures.py for the
pytest fixtures.
"""

from tests.support.testcloud.control import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    TestCloud,
    TestCloudError,
)

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "TestCloud", "TestCloudError"]
