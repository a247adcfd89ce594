"""``python -m ovo.rank``: see :mod:`ovo.commands.rank`."""

from ovo.commands.rank import main

if __name__ == "__main__":
    main()
