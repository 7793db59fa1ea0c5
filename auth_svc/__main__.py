from auth_svc.app import configure
from contracts.names import Service
from contracts.service import run_service

if __name__ == "__main__":
    run_service(Service.AUTH, configure)
