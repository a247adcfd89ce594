"""``python -m ovo.train``: see :mod:`ovo.commands.train`."""

from ovo.commands.train import main

if __name__ == "__main__":
    main()
