"""One module per command: each takes frozen options and input paths, does
the work through the library and returns a typed result.  The console
scripts in ``qrefine.scripts`` parse, call one of these and print."""
