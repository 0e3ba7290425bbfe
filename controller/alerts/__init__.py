"""The lab's voice: rules that turn what reachlab knows into alerts, sent through Apprise.

:mod:`.rules` reads the lab's state (rig liveness, sessions, collectors, weighings,
water, calibrations) and names the alerts that hold now; :mod:`.ledger` keeps each one
in the database so it is sent once, followed up when it clears and repeated only after
a set time; :mod:`.send` hands a message to Apprise; :mod:`.watch` is the always-on loop
(``labctl watch``) that does all three.
"""
