"""``python -m ovo.search``."""

from ovo.search.command import main

if __name__ == "__main__":
    main()
