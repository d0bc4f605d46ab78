"""topicq's testing room: what tests, drills and benchmarks use to run topicq for real.

    fake_gemini*     a fake Gemini embedding API on a local port (`python -m testkit.fake_gemini`)
    worker_process   `topicq worker` subprocesses (cli/worker_process.py's, the demo's), and counting
                     their result rows
    databases        throw-away PostgreSQL databases
    factories        labelled posts and small registered models on the fake embedder
    tables           labelled posts written as the CSV / JSON lines files `topicq train` reads
    scrape           a worker's /metrics read the way Prometheus does
    wire             raw Celery messages built from the documented wire format alone
    drills           the fault drills (short in the test suite, long from bench/drills.py)

Nothing in the product imports it.
"""
