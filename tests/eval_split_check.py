"""One of two processes (two CPU devices each) scoring a 13-example split at global batch 8
through `evaluators.base.predict_split`; prints what it gathered as JSON (tests/test_evaluators.py).

    python tests/eval_split_check.py COORDINATOR_ADDRESS PROCESS_ID
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcxr import sharding  # noqa: E402

sharding.initialize_distributed(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))

from tests import test_evaluators as t  # noqa: E402

calls = []
real = sharding.process_allgather


def spy(tree):
  calls.append(1)
  return real(tree)


sharding.process_allgather = spy
out = t.base.predict_split(t.make_ctx(8), None, t.FakeSplit(13))
print(
  json.dumps(
    {
      "gathers": len(calls),
      "index": out["index"].tolist(),
      "scored": out["probs"][:, 0].astype(int).tolist(),
      "label": out["label"].tolist(),
    }
  )
)
