"""``python -m ovo.latency``: see :mod:`ovo.commands.latency`."""

from ovo.commands.latency import main

if __name__ == "__main__":
    main()
