"""Exit codes of the ``steprun`` command.

``run`` and ``wait`` exit with the step's own exit code when it ran to completion, so a shell
script can treat ``steprun run`` like running the command locally. When there is no exit code
to pass on, the codes below say what happened; they follow common conventions (coreutils
``timeout`` uses 124, shells report an interrupt as 130, ``docker run`` uses 125 when the
container could not run, sysexits.h has 69 for an unavailable service and 75 for "try again").
A step may itself exit with one of these numbers; the phase printed on stderr tells them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steprun.api.models import StepRun

OK = 0
ERROR = 1  # steprun itself failed: not found, forbidden, unexpected API answer
USAGE = 2  # bad arguments or manifest, StepRun refused by the API server, or phase Rejected
API_UNREACHABLE = 69
WAIT_TIMEOUT = 75  # `wait --timeout` elapsed; the step is still running
STEP_TIMED_OUT = 124  # phase TimedOut: the step exceeded its timeoutSeconds
NO_EXIT_CODE = 125  # phase Failed without an exit code: the container never ran or was lost
CANCELLED = 130  # phase Cancelled, or interrupted with Ctrl-C

EXIT_CODES_HELP = f"""\
exit codes:
  0        the step succeeded
  1-255    the step failed with this exit code
  {ERROR}        steprun failed (not found, forbidden, unexpected API answer)
  {USAGE}        invalid arguments or StepRun, or the step was rejected (phase Rejected)
  {API_UNREACHABLE}       the API server is unreachable
  {WAIT_TIMEOUT}       wait --timeout elapsed while the step still runs
  {STEP_TIMED_OUT}      the step timed out (phase TimedOut)
  {NO_EXIT_CODE}      the step failed without an exit code (image pull, startup timeout,
           Pod lost)
  {CANCELLED}      the step was cancelled (or Ctrl-C cancelled it)
"""


def exit_code_for(steprun: StepRun) -> int:
    """The exit code that reports a finished step."""
    from steprun.api.models import Phase

    phase = steprun.status.phase
    if not isinstance(phase, Phase) or not phase.terminal:
        raise ValueError(f'steprun "{steprun.name}" is not finished (phase {phase or "unset"})')
    match phase:
        case Phase.SUCCEEDED:
            return OK
        case Phase.FAILED:
            code = steprun.status.exit_code
            return code if code is not None and 1 <= code <= 255 else NO_EXIT_CODE
        case Phase.TIMED_OUT:
            return STEP_TIMED_OUT
        case Phase.CANCELLED:
            return CANCELLED
        case _:
            return USAGE
