"""Test doubles shipped with cloudinitd (like `fabric.testing`), for our tests and yours.

- `memory`: a provider kind (`provider: memory` in a cloud entry) whose
  machines live in this process and which fails, stalls or loses instances
  when data says so (`cloudinitd.testing.memory`).
- `FakeRemote`: put on a run's context (`ctx.remote = FakeRemote({...})`),
  it answers the engine's SSH steps as data says and records their order
  (`cloudinitd.testing.remote`).

Neither starts a process or opens a connection.
"""

from cloudinitd.testing.memory import MemoryCloud, MemoryProvider, forget_clouds, memory_cloud
from cloudinitd.testing.remote import Call, FakeRemote

__all__ = ["Call", "FakeRemote", "MemoryCloud", "MemoryProvider", "forget_clouds",
           "memory_cloud"]
