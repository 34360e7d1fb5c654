"""automlops: drop a tabular CSV into a bucket, get a tuned, evaluated model served over HTTP."""

import os

# OpenMP threads (LightGBM, XGBoost, scikit-learn) spin while they wait for work by default. On a
# machine whose cores are busy with anything else (another worker, another run, the server), a
# spinning thread holds the core the thread it waits for needs: measured here, one training took
# 82 s instead of 12 s. Sleeping waiters cost little when the cores are free. Read by the OpenMP
# runtime when it loads, so set before any learner library is imported; a value the environment
# gives wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
