"""Render docs/reliability.md from what the reliability tests recorded.

    python bench/reliability_report.py RESULTS_DIR docs/reliability.md

RESULTS_DIR holds `<table>.jsonl` files written by the tests (tests/reliability, through
`record()`) and `outcomes.jsonl` (each test's outcome). Every figure in the page comes from
there; nothing is typed in by hand. `make reliability` runs the suite and then this.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Row = dict[str, Any]


# How the guarantees hold (fixed text: the design; every figure below comes from the tests).
NOTES = [
    "## How it holds",
    "",
    "- **Atomic writes, one commit point per stage.** Objects are written to a temp file and "
    "renamed; a stage's trigger for the next one is written last (schema.json, model.tar.gz), "
    "so a reader sees the old bytes or the new, and partial outputs of a killed stage are "
    "never acted on.",
    "- **The gap between a write and its notification.** S3 sends the notification for every "
    "PUT; the local store sends it after the rename, so a crash in between loses the event. "
    "The stage's own message is then still undeleted and comes back after the visibility "
    "timeout; the stage finds its output written, does no work, and (on a redelivery) sends "
    "the output's notification again. A notification too many is harmless: every stage is "
    "idempotent (preprocess and train skip written outputs, deploy registers by run id and "
    "re-queues the evaluation of a candidate, evaluate re-decides a candidate and skips a "
    "decided one).",
    "- **One version per distinct input.** A run's id is a hash of the dataset, the bytes and "
    "the manifest; the registry registers a run once, by compare-and-swap on its ETag. The "
    "same bytes uploaded again are recorded as a run with `duplicate_of` and do no work.",
    "- **An upload is never replaced before it is processed.** Every upload through automlops "
    "(CLI, dashboard, `aws upload`) is stored at a key of its own, "
    "`data/<dataset>/<upload>/<file>.csv`; a file a person copies into the data folder keeps "
    "the key they chose, and its run checks that the bytes are still the ones its "
    "notification announced (ETag).",
    "- **Bounded work per request.** A JSON body's instances are counted on its bytes before "
    "it is parsed, so a body over the cap (`AUTOMLOPS_MAX_INSTANCES`) is a 413 without a "
    "parse; bigger bodies are parsed and predicted in worker threads, off the event loop.",
    "- **Messages that kill their worker.** The queue moves a message received `max_receives` "
    "times to the dead-letter queue; the worker then marks its run failed, naming the DLQ "
    "message (`automlops dlq redrive ID`).",
    "- **Limits.** Uploads over `max_upload_bytes` (1 GiB; `AUTOMLOPS_MAX_UPLOAD_BYTES`) are "
    "refused by their size before they are read; tables over 10,000 columns before they are "
    "parsed; keys over 1,024 bytes or with a name over 255 bytes by the store. A running stage "
    "renews its message's visibility timeout (`AUTOMLOPS_VISIBILITY_TIMEOUT`, 30 s locally) "
    "every third of it, so a stage longer than the timeout is not started again by a second "
    "worker, and a message whose worker died comes back within that timeout.",
    "",
]


def load(folder: Path) -> tuple[dict[str, list[Row]], dict[str, Row]]:
    """The recorded tables by name, and each test's outcome by test id."""
    tables: dict[str, list[Row]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        tables[path.stem] = rows
    outcomes = {row["test"]: row for row in tables.pop("outcomes", [])}
    return tables, outcomes


def cell(value: Any) -> str:
    """A value as a Markdown table cell (pipes escaped, newlines flattened)."""
    if isinstance(value, dict):
        value = ", ".join(f"{k}: {v}" for k, v in value.items())
    elif isinstance(value, float):
        value = f"{value:g}"
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text


def table(headers: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def result(row: Row, outcomes: dict[str, Row]) -> str:
    outcome = outcomes.get(row.get("test", ""), {}).get("outcome", "not run")
    return {"passed": "pass", "failed": "**FAIL**"}.get(outcome, outcome)


def render(tables: dict[str, list[Row]], outcomes: dict[str, Row], meta: dict[str, str]) -> str:
    counts = Counter(o["outcome"] for o in outcomes.values())
    crash = tables.get("crash", [])
    poison = tables.get("poison", [])
    fuzz = tables.get("fuzz", [])
    load_rows = tables.get("load", [])
    races = tables.get("concurrency_race", [])
    same_name = tables.get("same_name_uploads", [])
    artifacts = tables.get("artifacts", [])
    big_body = tables.get("big_body", [])
    lines = [
        "# Reliability and security: what was tried and what happened",
        "",
        "Generated by `make reliability` from the reliability tests' own output "
        "(`tests/reliability/`, rendered by `bench/reliability_report.py`); do not edit by hand.",
        "",
        f"- run: {meta['date']} on {meta['machine']}",
        "- tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
        f"- crash safety: {len(crash)} kill points over "
        f"{len({r['stage'] for r in crash})} stages; "
        f"{sum(r['lost'] for r in crash)} runs lost, {sum(r['doubled'] for r in crash)} doubled",
        f"- poison inputs: {len(poison)} kinds; "
        f"{sum(r['worker_crashes'] for r in tables.get('poison_summary', []))} worker crashes",
        f"- fuzzing: {sum(r['requests'] for r in fuzz)} requests; "
        f"{sum(r['server_errors'] for r in fuzz)} server errors",
        "- load: "
        + "; ".join(
            f"{r['requests']} {r['kind']} requests at concurrency {r['concurrency']}: "
            f"{r['errors']} errors, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
            for r in load_rows
        ),
        f"- gate races: {len(races)} run; "
        f"{sum(r['promotions_without_comparison'] for r in races)} promotions without comparison",
        f"- same-name uploads: {sum(r['uploads'] for r in same_name)} uploaded; "
        f"{sum(r['uploads_lost'] for r in same_name)} lost",
        f"- crafted model artifacts: {len(artifacts)} tried; "
        f"{sum(r.get('process_deaths', 0) for r in artifacts)} process deaths",
        f"- 5xx answers: {_server_errors(tables)} (fuzzing, crafted artifacts, long names)",
        "- slowest `/ping` during a big body: "
        + ("; ".join(f"{r['slowest_ping_ms']} ms ({r['body']})" for r in big_body) or "not run"),
        "",
    ]
    lines += NOTES
    failed = [t for t, o in outcomes.items() if o["outcome"] == "failed"]
    if failed:
        lines += ["## Failed tests", "", *[f"- `{t}`" for t in failed], ""]

    lines += ["## Crash safety: kill -9 inside each stage", ""]
    lines += [
        "One upload through a chain of worker processes, each paused by the test-side worker "
        "(`tests/reliability/paused_worker.py`, `<stage>@<key>`) right after that write and "
        "killed with SIGKILL; "
        "the next process receives the message again after the visibility timeout. After "
        "every kill all visible objects were opened and parsed and the registry checked.",
        "",
    ]
    lines += table(
        [
            "stage",
            "killed at",
            "durable at the kill",
            "objects visible",
            "redeliveries",
            "lost",
            "doubled",
            "result",
        ],
        (
            [
                r["stage"],
                f"`{r['point']}`",
                r["durable"],
                sum(r["objects"].values()),
                r["attempts"] - 1,
                r["lost"],
                r["doubled"],
                result(r, outcomes),
            ]
            for r in crash
        ),
    )
    extra = tables.get("crash_write", []) + tables.get("crash_dlq", [])
    if extra:
        lines += [
            "",
            *table(
                ["fault", "what readers saw / where it ended", "result"],
                [
                    *(
                        [f"killed {r['killed']}", r["visible"], result(r, outcomes)]
                        for r in tables.get("crash_write", [])
                    ),
                    *(
                        [
                            f"worker killed on each of {r['deliveries']} deliveries",
                            f"message in the DLQ, run {r['run_status']}",
                            result(r, outcomes),
                        ]
                        for r in tables.get("crash_dlq", [])
                    ),
                ],
            ),
        ]
    for r in tables.get("idempotency", []):
        lines += [
            "",
            "## Idempotency",
            "",
            *table(
                [
                    "uploads",
                    "deliveries",
                    "runs that did work",
                    "duplicates recorded",
                    "model versions",
                    "result",
                ],
                [
                    [
                        r["uploads"],
                        r["deliveries"],
                        r["runs_with_work"],
                        r["duplicates_recorded"],
                        r["model_versions"],
                        result(r, outcomes),
                    ]
                ],
            ),
        ]

    if same_name:
        lines += ["", "## Same-name uploads", ""]
        lines += [
            "Files of one name uploaded into one dataset before any worker ran (two different "
            "files, then the first again): each upload has its own key, so none replaced "
            "another; runs are named after content, so the same bytes again are a duplicate.",
            "",
        ]
        lines += table(
            [
                "uploads",
                "distinct files",
                "runs that did work",
                "duplicates recorded",
                "model versions",
                "uploads lost",
                "a run's source",
                "result",
            ],
            (
                [
                    r["uploads"],
                    r["distinct_files"],
                    r["runs_with_work"],
                    r["duplicates_recorded"],
                    r["model_versions"],
                    r["uploads_lost"],
                    f"`{r['shown_as']}`",
                    result(r, outcomes),
                ]
                for r in same_name
            ),
        )

    lines += ["", "## Poison inputs", ""]
    for r in tables.get("poison_summary", []):
        lines += [
            f"All {r['kinds']} kinds went through one workspace with three live workers, between "
            f"two healthy uploads ({r['controls_succeeded']} of 2 succeeded); "
            f"{r['worker_crashes']} worker crashes; nothing was written outside the bucket "
            f"folders ({r['elapsed_s']} s).",
            "",
        ]
    lines += table(
        ["#", "kind", "input", "expected", "outcome", "message or version", "attempts", "result"],
        (
            [
                i,
                r["kind"],
                r["input"],
                r["expected"],
                r["outcome"],
                r["detail"],
                r["attempts"],
                result(r, outcomes),
            ]
            for i, r in enumerate(poison, start=1)
        ),
    )

    lines += ["", "## Safe model artifacts", ""]
    lines += table(
        ["hostile archive", "what happened", "process deaths", "5xx answers", "result"],
        (
            [
                r["attack"],
                r["result"],
                r.get("process_deaths", "-"),
                r.get("server_errors", "-"),
                result(r, outcomes),
            ]
            for r in artifacts
        ),
    )

    long_names = tables.get("long_names", [])
    if long_names:
        lines += ["", "## Long names", ""]
        lines += table(
            ["lengths", "keys stored", "keys refused", "pages asked", "5xx answers", "result"],
            (
                [
                    r["lengths"],
                    r["keys_stored"],
                    r["refused"],
                    r.get("pages", "-"),
                    r.get("server_errors", "-"),
                    result(r, outcomes),
                ]
                for r in long_names
            ),
        )

    lines += ["", "## Hostile names in reports", ""]
    escaping = [(t, o) for t, o in outcomes.items() if "report_" in t and "test_poison_inputs" in t]
    lines += table(
        ["check", "result", "note"],
        ([t.split("::", 1)[1], o["outcome"], o.get("reason", "")] for t, o in escaping),
    )

    auth = tables.get("auth", [])
    lines += [
        "",
        "## API key",
        "",
        f"`automlops serve --api-key-env VAR`: {len(auth)} header variants without the right "
        "key (none, empty, wrong scheme, one character off, wrong case, non-ASCII) were each "
        "sent to every route: all answered 401; `/ping` stayed open; keys are compared with "
        "`hmac.compare_digest`.",
        "",
    ]

    listeners = tables.get("listeners", [])
    if listeners:
        lines += [
            "Every listener refuses what it must not answer: the internal model host of "
            "`up`/`run` without its per-process token, `serve` for a foreign `Host` "
            "(DNS rebinding).",
            "",
            *table(
                ["listener", "request", "status", "result"],
                (
                    [r["listener"], r["request"], r["status"], result(r, outcomes)]
                    for r in listeners
                ),
            ),
            "",
        ]

    lines += ["## Fuzzing", ""]
    lines += table(
        ["tool", "requests", "operations", "answers by status", "server errors", "result"],
        (
            [
                r["tool"],
                r["requests"],
                r["operations"],
                r["statuses"],
                r["server_errors"],
                result(r, outcomes),
            ]
            for r in fuzz
        ),
    )

    lines += ["", "## Load on loopback, with the champion switching", ""]
    lines += [
        "`automlops serve` with the API key on; 32 keep-alive connections; v1 and v2 promoted "
        "in turn while the load ran. Every answer was checked against the predictions of the "
        "version it named. Client and server share the machine.",
        "",
    ]
    lines += table(
        [
            "requests",
            "rows",
            "concurrency",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "requests/s",
            "switches",
            "answers by version",
            "result",
        ],
        (
            [
                f"{r['requests']} {r['kind']} requests",
                r["rows"],
                r["concurrency"],
                r["errors"],
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["requests_per_s"],
                r["champion_switches"],
                r["answers_by_version"],
                result(r, outcomes),
            ]
            for r in load_rows
        ),
    )
    if big_body:
        lines += [
            "",
            "A body under the byte limit with millions of rows, sent while `/ping` was asked "
            "every 5 ms: over the instance cap it is refused on its bytes, before a parse; at "
            "the cap it is parsed and predicted off the event loop.",
            "",
            *table(
                [
                    "body",
                    "MB",
                    "status",
                    "request s",
                    "pings meanwhile",
                    "median ping ms",
                    "slowest ping ms",
                    "result",
                ],
                (
                    [
                        r["body"],
                        r["body_mb"],
                        r["status"],
                        r["request_s"],
                        r["pings_during"],
                        r["median_ping_ms"],
                        r["slowest_ping_ms"],
                        result(r, outcomes),
                    ]
                    for r in big_body
                ),
            ),
        ]
    for r in tables.get("server_kill", []):
        lines += [
            "",
            *table(
                ["killed", "registry after", "served after restart", "result"],
                [
                    [
                        r["killed"],
                        r["registry_after"],
                        r["served_after_restart"],
                        result(r, outcomes),
                    ]
                ],
            ),
        ]

    for r in tables.get("concurrency", []):
        lines += [
            "",
            "## Concurrency",
            "",
            *table(
                [
                    "workers",
                    "datasets",
                    "uploads",
                    "runs succeeded",
                    "duplicates",
                    "model versions",
                    "registry snapshots checked",
                    "most champions seen",
                    "most stages at once",
                    "seconds",
                    "result",
                ],
                [
                    [
                        r["workers"],
                        r["datasets"],
                        r["uploads"],
                        r["runs_succeeded"],
                        r["duplicates"],
                        r["model_versions"],
                        r["registry_snapshots_checked"],
                        r["max_champions_seen"],
                        r["max_parallel_stages"],
                        r["elapsed_s"],
                        result(r, outcomes),
                    ]
                ],
            ),
        ]

    if races:
        lines += [
            "",
            "## The gate under racing workers",
            "",
            "Several worker processes on one workspace, uploads of one dataset: every "
            "promotion must name the champion it replaced (or be the only first model).",
            "",
            *table(
                [
                    "round",
                    "processes",
                    "workers each",
                    "uploads",
                    "promotions",
                    "first-model decisions",
                    "promotions without comparison",
                    "result",
                ],
                (
                    [
                        r["round"],
                        r["processes"],
                        r["workers"],
                        r["uploads"],
                        r["promotions"],
                        r["first_model_decisions"],
                        r["promotions_without_comparison"],
                        result(r, outcomes),
                    ]
                    for r in races
                ),
            ),
        ]

    huge = tables.get("huge_upload", [])
    lines += ["", "## A 2 GB upload", ""]
    if huge:
        lines += table(
            ["size", "limit", "outcome", "worker peak RSS MB", "result"],
            (
                [
                    f"{r['size_bytes']:,} bytes",
                    f"{r['limit_bytes']:,} bytes",
                    r["outcome"],
                    r["worker_peak_rss_mb"],
                    result(r, outcomes),
                ]
                for r in huge
            ),
        )
    else:
        lines.append("Not run (`make reliability` runs it).")
    return "\n".join(lines) + "\n"


def _server_errors(tables: dict[str, list[Row]]) -> int:
    """5xx answers the tests counted, wherever they asked an HTTP server."""
    return sum(
        row.get("server_errors", 0)
        for name in ("fuzz", "artifacts", "long_names")
        for row in tables.get(name, [])
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    folder, target = Path(argv[1]), Path(argv[2])
    tables, outcomes = load(folder)
    if not outcomes:
        print(f"no test outcomes in {folder}: run the reliability tests first", file=sys.stderr)
        return 1
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
    }
    target.write_text(render(tables, outcomes, meta))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
