"""Process limits the tool needs before it opens thousands of sockets."""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger(__name__)


def raise_nofile_limit() -> int:
    """Raise the soft open-file limit to the hard limit; return the new soft limit.

    The idle scenario holds tens of thousands of sockets and the default soft
    limit (often 1024) would turn that into ``EMFILE`` errors that look like
    server failures. We never try to exceed the hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, target, exc)
    return soft
