"""The beat's scheduler: django-celery-beat's database scheduler, riding out a database that is briefly unavailable
when beat starts.

Once running, the database scheduler logs a database error and tries again at the next tick; but the first read
of the schedule happens in its constructor, where an error (PostgreSQL restarting, SQLite's transient "locking
protocol" while another process recovers the write-ahead log) ends the beat for good, and with it every periodic
retrain and drift check. Here that first read is tried again for about half a minute before giving up.
"""

import logging
import time

from django.db import close_old_connections
from django.db.utils import DatabaseError, InterfaceError
from django_celery_beat import schedulers

logger = logging.getLogger(__name__)

STARTUP_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


class DatabaseScheduler(schedulers.DatabaseScheduler):
    def setup_schedule(self) -> None:
        for delay in STARTUP_RETRY_DELAYS:
            try:
                super().setup_schedule()
                return
            except (DatabaseError, InterfaceError) as error:
                logger.warning("Beat could not read its schedule (%s); trying again in %s s", error, delay)
                # Back to the state before the first read, so that the next try reads the whole schedule again.
                self._schedule, self._initial_read = None, True
                close_old_connections()
                time.sleep(delay)
        super().setup_schedule()  # the last try: its error ends the beat, as it would have at once
