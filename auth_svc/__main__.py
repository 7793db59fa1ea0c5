import sys

from auth_svc.app import AUTH
from auth_svc.cli import main
from contracts.service import run_service

if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1:]))
    run_service(AUTH)
