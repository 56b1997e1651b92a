"""Configuration: the PHIL masters, the command-line parser and every check
of parameter values, all run before any input file is read.  What crosses
from a command line into the library is one frozen options object
(:func:`qrefine.config.options.freeze`)."""
