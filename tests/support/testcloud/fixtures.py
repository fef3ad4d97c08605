"""pytest fixtures for the EC2 test cloud.

`ec2_cloud()` hands out a test cloud process (reset to empty, no quota, no
faults). Processes are pooled for the session because starting moto costs
~1-2 s; each is terminated by pid when the session ends (or at the end of the
test with `ec2_cloud(fresh=True)`). Several calls in one test give several
independent clouds (one process each).

Instances on these clouds have addresses moto invents (54.x, 10.x) that
belong to nobody: a test using them must launch services with no scripts and
must not wait for SSH. Only instances given a real host with
`cloud.set_pool([...])` / `cloud.back({...})` may be contacted.

`ec2_credentials` puts the test cloud's dummy keys in two environment
variables and returns their NAMES, which is what a plan or catalog holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.testcloud.control import ACCESS_KEY, SECRET_KEY, TestCloud

ACCESS_ENV = "CLOUDINITD_TEST_EC2_ACCESS_KEY"
SECRET_ENV = "CLOUDINITD_TEST_EC2_SECRET_KEY"


class _Pool:
    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.idle: list[TestCloud] = []
        self.all: list[TestCloud] = []

    def take(self, name: str) -> TestCloud:
        while self.idle:
            cloud = self.idle.pop()
            if cloud.alive:
                cloud.name = name
                cloud.reset()
                return cloud
        cloud = TestCloud(f"{name}-{len(self.all)}", log_dir=self.log_dir).start()
        self.all.append(cloud)
        return cloud

    def give_back(self, cloud: TestCloud) -> None:
        if cloud.alive:
            self.idle.append(cloud)

    def stop_all(self) -> None:
        for cloud in self.all:
            cloud.stop()


@pytest.fixture(scope="session")
def _testcloud_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Pool]:
    pool = _Pool(tmp_path_factory.mktemp("testcloud-logs"))
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def ec2_cloud(_testcloud_pool: _Pool) -> Iterator[Callable[..., TestCloud]]:
    """Factory: `ec2_cloud(name="a", quota=None, fresh=False) -> TestCloud`."""
    taken: list[tuple[TestCloud, bool]] = []

    def make(name: str = "cloud", quota: int | None = None, fresh: bool = False) -> TestCloud:
        if fresh:
            cloud = TestCloud(name, log_dir=_testcloud_pool.log_dir).start()
        else:
            cloud = _testcloud_pool.take(name)
        taken.append((cloud, fresh))
        if quota is not None:
            cloud.set_quota(quota)
        return cloud

    try:
        yield make
    finally:
        for cloud, fresh in taken:
            if fresh:
                cloud.stop()
            else:
                _testcloud_pool.give_back(cloud)


@pytest.fixture
def ec2_credentials(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(access_key_env, secret_key_env): names of env vars holding the test cloud's keys."""
    monkeypatch.setenv(ACCESS_ENV, ACCESS_KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET_KEY)
    return ACCESS_ENV, SECRET_ENV
