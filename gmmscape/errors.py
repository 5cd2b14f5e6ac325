"""One exception type for bad user input, so scripts can print one clear line."""


class InputError(ValueError):
    """Bad input file, row, key or value; the message names it and says what was expected."""
