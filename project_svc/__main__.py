from contracts.names import Service
from contracts.service import run_service
from project_svc.app import configure

if __name__ == "__main__":
    run_service(Service.PROJECT, configure)
