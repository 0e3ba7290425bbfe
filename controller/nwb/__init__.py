"""NWB export for publication on DANDI: subjects, sessions as NWB files (docs/nwb.md).

:mod:`.subject` (what a mouse carries as a subject) and :mod:`.content` (what a
session puts in its file) need no extra; :mod:`.writer` needs pynwb (the ``nwb``
extra), :mod:`.export` reads the database and writes the files.
"""
