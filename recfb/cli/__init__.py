"""The ``recfb`` command line."""
