import sys

from contracts.service import run_service
from logging_svc.app import LOGGING

if __name__ == "__main__":
    if len(sys.argv) > 1:  # an operator's command (copy-logs), not the service
        from logging_svc.copy import run

        sys.exit(run(sys.argv[1:]))
    run_service(LOGGING)
