"""The command line: parse arguments, call the engine, format its results."""
