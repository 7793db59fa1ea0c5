from analytics_svc.app import ANALYTICS
from contracts.service import run_service

if __name__ == "__main__":
    run_service(ANALYTICS)
