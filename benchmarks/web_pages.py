"""Server time of the web pages and API on the demo data (issue 7: under 200 ms each).

Builds the demo database in a temporary folder, signs in as a handler, a police officer, a secretary and a
supervisor, and times each page in-process (no network), printing the median and the 95th percentile.
Run: .venv/bin/python benchmarks/web_pages.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

warnings.filterwarnings("ignore")

from fastapi.testclient import TestClient  # noqa: E402

from app.web import create_app  # noqa: E402
from tests.e2e.web.conftest import demo_app  # noqa: E402
from workflows.auth import create_token  # noqa: E402
from workflows.cases import list_cases  # noqa: E402

PAGES = {
    "sm_amr_handler": ["/cases", "/cases/{case}"],
    "sm_psb_handler": ["/cases"],
    "sm_amr_secretary": ["/secretary"],
    "sm_amr_supervisor": ["/supervisor", "/supervisor/export.xlsx?list=overdue"],
}
API = ["/api/v1/cases", "/api/v1/cases/{case}", "/api/v1/cases/{case}/history", "/api/v1/statistics"]


def timed(client: TestClient, path: str, rounds: int, **kwargs: object) -> tuple[float, float, int]:
    samples = []
    status = 0
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path, **kwargs)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings, deps = demo_app(Path(tmp))
        app = create_app(settings, deps)
        case = list_cases(deps, actor="sm_amr_handler")[0].case_no
        count = len(list_cases(deps))
        print(f"demo data: {count} cases; {args.rounds} rounds per page; times in ms (server, in-process)")
        print(f"{'who':22} {'page':42} {'median':>7} {'p95':>7} status")
        for user, paths in PAGES.items():
            with TestClient(app) as client:
                client.post("/login", data={"username": user, "password": "jointcase-demo", "next": "/"})
                for path in paths:
                    median, p95, status = timed(client, path.format(case=case), args.rounds)
                    print(f"{user:22} {path:42} {median:7.1f} {p95:7.1f} {status}")
        token = create_token(deps, "sm_amr_handler", name="bench")["token"]
        with TestClient(app) as client:
            for path in API:
                median, p95, status = timed(
                    client, path.format(case=case), args.rounds, headers={"Authorization": f"Bearer {token}"}
                )
                print(f"{'api sm_amr_handler':22} {path:42} {median:7.1f} {p95:7.1f} {status}")
        deps.engine.dispose()


if __name__ == "__main__":
    main()
