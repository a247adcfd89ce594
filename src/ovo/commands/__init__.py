"""The command-line commands: one module each, one shape (see :mod:`ovo.commands.cli`)."""
