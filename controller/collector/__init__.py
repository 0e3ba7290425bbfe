"""The collector wing: ``labctl serve`` and its pipeline, rig messages in, stored sessions out.

The flow of one batch: :mod:`~controller.collector.decode` sorts raw messages and keeps dead
letters, :mod:`~controller.collector.presence` records box statuses,
:mod:`~controller.collector.assembly` stores documents into their streams,
:mod:`~controller.collector.resend` asks for what is missing and
:mod:`~controller.collector.completion` rebuilds whole sessions and sends ``committed``;
:mod:`~controller.collector.ingest` ties them together in one transaction and
:mod:`~controller.collector.service` runs it on the broker connection.
:mod:`~controller.collector.leases` says who is collecting.
"""
