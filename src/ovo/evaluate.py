"""``python -m ovo.evaluate``: see :mod:`ovo.commands.evaluate`."""

from ovo.commands.evaluate import main

if __name__ == "__main__":
    main()
