"""The atomic model: reading it (io), the chemistry data cctbx needs for it
(chem_data), the rules every package reads it by (the element of an atom),
and charges from protonation states."""
