"""``labctl web``: the lab's dashboard in a browser (needs the ``web`` extra).

:mod:`controller.web.live` keeps one broker connection and the rigs' live
state; :mod:`controller.web.pages` reads the database for the pages;
:mod:`controller.web.control` starts and stops sessions through
:mod:`controller.control`, as labctl does, when a token is configured;
:mod:`controller.web.streams` caps the open live streams;
:mod:`controller.web.app` is the ASGI app (Starlette) that serves them.
Importing this package alone needs nothing beyond the controller;
:mod:`controller.web.app` needs Starlette.
"""

#: What labctl says when the extra is missing.
MISSING_EXTRA = "labctl web needs the web extra: pip install 'reachlab[web]'"
