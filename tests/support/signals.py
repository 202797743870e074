"""Children that tests interrupt with SIGINT must start with SIGINT deliverable.

A signal ignored or blocked in the test process is inherited across exec, and then the CLI under
test never sees the Ctrl-C it is sent. Whatever earlier in-process code did to the test process,
a child started with this ``preexec_fn`` gets the default disposition, unblocked.
"""

from __future__ import annotations

import signal


def default_sigint() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
