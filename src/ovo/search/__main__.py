"""``python -m ovo.search``: see :mod:`ovo.commands.search`."""

from ovo.commands.search import main

if __name__ == "__main__":
    main()
