"""``python -m bench``: run the benchmark (bench/run.sh installs the tools first)."""

from .bench import main

raise SystemExit(main())
