"""The atomic model itself: rules every package reads it by (the element of
an atom), and what a model must hold before QM can run on it."""
