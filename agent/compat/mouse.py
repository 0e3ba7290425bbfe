"""The original library's later ``Mouse``: ``train(backend, additional_data=..., **options)``."""

from __future__ import annotations

import os
from typing import Any

from agent import api
from agent.compat.backends import Backend
from agent.compat.session import Session

__all__ = ["Mouse"]


class Mouse(api.Mouse):
    """A mouse and its sessions; ``train`` runs a new one on a backend.

    Everything else is :class:`agent.api.Mouse`: ``init_from_file(data_dir,
    mouse_id)``, indexing, ``get_results``/``get_trials``, and
    ``save_data_to_file``, which writes what the mouse holds.
    """

    session_type = Session

    def train(  # type: ignore[override]  # the later API's signature, the seed's still taken
        self,
        backend: Backend | str | os.PathLike[str] | None = None,
        additional_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run a new session on ``backend`` after the previous one, keeping it in the data.

        ``additional_data`` goes into the session's data; ``kwargs`` go to
        :meth:`Session.run` (``duration``, ``intertrial_interval``, ``hook``, ...).
        Called the seed's way (``config_file=``, ``data=``, ``sim=``...) it is
        :meth:`agent.api.Mouse.train`.
        """
        if not isinstance(backend, Backend):
            if backend is None and additional_data is None:
                return super().train(**kwargs)
            return super().train(backend, additional_data, **kwargs)
        if self.mouse_id:
            print(f"Training mouse {self.mouse_id}")
        previous = self.data[-1].data if self.data else None
        session = Session()
        session.mouse_id = self.mouse_id
        if additional_data is not None:
            session.add_data(additional_data)
        self.data.append(session)
        session.run(backend, previous_data=previous, **kwargs)
        return None

    def save_data_to_file(self, json_path: str | os.PathLike[str]) -> api.SaveReport:
        """:meth:`agent.api.Mouse.save_data_to_file`, saying where, as the original did
        (what it removed or changed goes to the log, a warning Python shows by default)."""
        report = super().save_data_to_file(json_path)
        print(report.lines()[0])
        return report
