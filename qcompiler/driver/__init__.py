"""Options, the compile pipeline, `qcc verify` and the command line: the only layer that
chooses a backend (through `qcompiler.backends.registry`)."""
