"""Chores on this machine that several modules need, done one way in one place.

- `procs`: the processes we supervise (alive, ours, gone, stopped), through psutil;
- `locks`: flock-held lock files;
- `files`: private (0600) files written atomically;
- `ports`: is a TCP port answering, is it free;
- `waiting`: wait until a condition holds, with a deadline.

An effect layer below every other one: it imports nothing of cloudinitd, and the pure
core imports none of it (import-linter contracts in pyproject.toml).
"""
