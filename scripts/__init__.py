"""Command-line glue for qrefine (installed as ``qrefine.scripts``).

Each module parses its arguments, calls the library, reports, and turns the
one error type into one line on stderr and exit status 1.
"""
