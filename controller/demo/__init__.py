"""The demo wing: ``labctl demo``, the processes of a simulated lab, and the broker it starts.

:mod:`~controller.demo.run` is the command, :mod:`~controller.demo.lab` starts and stops its
processes by pid, :mod:`~controller.demo.broker` finds or starts an MQTT broker (the tests use
it too).
"""
