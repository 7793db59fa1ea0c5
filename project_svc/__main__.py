from contracts.service import run_service
from project_svc.app import PROJECT

if __name__ == "__main__":
    run_service(PROJECT)
