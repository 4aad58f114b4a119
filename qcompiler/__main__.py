"""`python -m qcompiler ...` is the `qcc` command."""
import sys

from qcompiler.driver.cli import main

sys.exit(main())
