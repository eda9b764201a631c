"""Run by the LiteLLM venv's interpreter (tests/support/litellm_venv.py): one `litellm.rerank()`.

Reads the call's arguments as JSON on stdin and prints the results as JSON, so the test in the
suite's interpreter compares them with the native `/api/rerank` answer. Nothing from pollama or
the test environment is imported here: this interpreter has only LiteLLM and what it needs.
"""

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import

import litellm  # noqa: E402

args = json.load(sys.stdin)
response = litellm.rerank(**args)
print(
    json.dumps(
        [
            {"index": r["index"], "relevance_score": r["relevance_score"], "document": r.get("document")}
            for r in response.results
        ]
    )
)
