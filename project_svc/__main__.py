import sys

from contracts.service import run_service
from project_svc.app import PROJECT

if __name__ == "__main__":
    if len(sys.argv) > 1:  # an operator's command (reseal-webhook-secrets), not the service
        from project_svc.reseal import run

        sys.exit(run(sys.argv[1:]))
    run_service(PROJECT)
