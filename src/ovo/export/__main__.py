"""``python -m ovo.export``: see :mod:`ovo.commands.export`."""

from ovo.commands.export import main

if __name__ == "__main__":
    main()
