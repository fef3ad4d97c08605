"""The engine: converge, launch, configure, maintain and terminate runs (see docs/INTERNALS.md)."""
